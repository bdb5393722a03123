import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'
import { parseConfig, SETTINGS } from '../../src/config.ts'
import { runStatement } from '../../src/db/database.ts'
import { DUE_JOBS_SQL } from '../../src/infra/jobs/metrics.ts'
import { REPO_ROOT } from '../support/docs.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/*
 * deploy/k8s/ checked offline: `kubectl kustomize` renders the base and the production overlay, every
 * object is validated against the Kubernetes and KEDA schemas (kubernetes-models), and the manifests
 * are held to the app: the settings they supply are the ones src/config.ts reads, secrets only come
 * from the Secret, the probes and port are the app's, the shutdown fits in the grace period, and
 * KEDA's query runs on the migrated schema. No cluster runs here: docs/KUBERNETES.md says what that leaves.
 */

/** Settings production leaves unset on purpose, each with its reason. */
const LEFT_UNSET: Record<string, string> = {
  DATA_DIR: 'the embedded PGlite belongs to one process; every pod shares PostgreSQL through DATABASE_URL',
  QSTASH_URL: 'jobs run on the worker Deployment (embedded runner, scaled by KEDA on the jobs table), not delivered by QStash',
  QSTASH_TOKEN: 'as QSTASH_URL',
  QSTASH_CURRENT_SIGNING_KEY: 'as QSTASH_URL',
  QSTASH_NEXT_SIGNING_KEY: 'as QSTASH_URL',
  QSTASH_TIMEOUT_MS: 'as QSTASH_URL',
  QSTASH_MAX_IN_FLIGHT: 'as QSTASH_URL',
  ORDER_EVENTS_POLL_MS: 'Workers only: Bun and Node wake order event streams with LISTEN/NOTIFY, they do not poll',
}

/** A setting whose value must never sit in a ConfigMap. */
const looksSecret = (name: string) => /SECRET|_PASSWORD$|_TOKEN$|_KEY$|^DATABASE_URL$|^DATABASE_REPLICA_URLS$/.test(name)

/** The in-flight requests' bound after the drain: `listener.stop(10_000)` in src/runtime/process.ts. */
const LISTENER_STOP_SECONDS = 10

interface K8sObject {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are read as plain data
  spec?: any
  data?: Record<string, string>
}

const OVERLAYS = ['deploy/k8s/base', 'deploy/k8s/overlays/production']

function render(dir: string): K8sObject[] {
  const text = execFileSync('kubectl', ['kustomize', join(REPO_ROOT, dir)], { encoding: 'utf8' })
  return parseAllDocuments(text).map((doc) => doc.toJS() as K8sObject)
}

/** The kubernetes-models class of an object, by its apiVersion and kind. */
async function model(o: K8sObject): Promise<new (data: unknown) => { validate(): void }> {
  const path = o.apiVersion.endsWith('keda.sh/v1alpha1')
    ? `@kubernetes-models/keda/${o.apiVersion}/${o.kind}`
    : `kubernetes-models/${o.apiVersion}/${o.kind}`
  const mod = await import(path)
  return mod[o.kind]
}

const find = (objects: K8sObject[], kind: string, name: string) => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name)
  if (!o) throw new Error(`no ${kind} ${name} rendered`)
  return o
}

const container = (d: K8sObject) => d.spec.template.spec.containers[0]

/** A Deployment's settings: its ConfigMap's keys (envFrom) and its env entries. */
function settingsOf(deployment: K8sObject, objects: K8sObject[]) {
  const c = container(deployment)
  const fromConfigMap = (c.envFrom ?? []).flatMap((e: { configMapRef?: { name: string } }) =>
    e.configMapRef ? Object.keys(find(objects, 'ConfigMap', e.configMapRef.name).data ?? {}) : [],
  )
  const env = (c.env ?? []) as { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[]
  return { names: new Set<string>([...fromConfigMap, ...env.map((e) => e.name)]), env }
}

/** Every ConfigMap key that looks like a secret. */
const secretsInConfigMaps = (objects: K8sObject[]) =>
  objects.filter((o) => o.kind === 'ConfigMap').flatMap((o) => Object.keys(o.data ?? {}).filter(looksSecret))

describe.each(OVERLAYS)('kubectl kustomize %s', (dir) => {
  const objects = render(dir)

  it('renders objects that the Kubernetes and KEDA schemas accept', async () => {
    expect(objects.map((o) => o.kind).sort()).toEqual(
      [
        'ConfigMap',
        'Deployment',
        'Deployment',
        'HorizontalPodAutoscaler',
        'Job',
        'PodDisruptionBudget',
        'PodDisruptionBudget',
        'ScaledObject',
        'Service',
      ].sort(),
    )
    for (const o of objects) {
      const Model = await model(o)
      expect(() => new Model(o).validate(), `${o.kind} ${o.metadata.name}`).not.toThrow()
    }
  })

  it('keeps secrets out of the ConfigMap', () => {
    expect(secretsInConfigMaps(objects)).toEqual([])
  })

  it('runs every container non-root, on a read-only root filesystem, with requests and limits', () => {
    const pods = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'Job').map((o) => o.spec.template.spec)
    expect(pods).toHaveLength(3)
    for (const pod of pods) {
      expect(pod.securityContext.runAsNonRoot).toBe(true)
      for (const c of pod.containers) {
        expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false })
        expect(Object.keys(c.resources.requests).sort()).toEqual(['cpu', 'memory'])
        expect(Object.keys(c.resources.limits).sort()).toEqual(['cpu', 'memory'])
      }
    }
  })

  it('scales the api on CPU and the worker with KEDA, and protects both with a PodDisruptionBudget', () => {
    const hpa = find(objects, 'HorizontalPodAutoscaler', 'edgeshop-api')
    expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'edgeshop-api' })
    expect(hpa.spec.metrics[0].resource.name).toBe('cpu')
    const scaled = find(objects, 'ScaledObject', 'edgeshop-worker')
    expect(scaled.spec.scaleTargetRef.name).toBe('edgeshop-worker')
    expect(scaled.spec.minReplicaCount).toBeGreaterThanOrEqual(1)
    const trigger = scaled.spec.triggers[0]
    expect(trigger.type).toBe('postgresql')
    // The connection string KEDA reads is the worker container's DATABASE_URL, from the Secret.
    const env = settingsOf(find(objects, 'Deployment', 'edgeshop-worker'), objects).env
    expect(env.find((e) => e.name === trigger.metadata.connectionFromEnv)?.valueFrom?.secretKeyRef?.key).toBe('DATABASE_URL')
    for (const name of ['edgeshop-api', 'edgeshop-worker']) {
      const selector = find(objects, 'PodDisruptionBudget', name).spec.selector.matchLabels
      expect(find(objects, 'Deployment', name).spec.template.metadata.labels).toMatchObject(selector)
    }
    const service = find(objects, 'Service', 'edgeshop-api')
    expect(find(objects, 'Deployment', 'edgeshop-api').spec.template.metadata.labels).toMatchObject(service.spec.selector)
  })

  it('migrates with the image migrate command, with DATABASE_URL from the Secret', () => {
    const job = find(objects, 'Job', 'edgeshop-migrate')
    const c = job.spec.template.spec.containers[0]
    expect(c.command).toEqual(['node', 'scripts/migrate.ts'])
    expect(readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8')).toContain('node scripts/migrate.ts')
    expect(c.env).toEqual([{ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'edgeshop-secrets', key: 'DATABASE_URL' } } }])
  })
})

describe('the production overlay and the app', () => {
  const objects = render('deploy/k8s/overlays/production')
  const deployments = ['edgeshop-api', 'edgeshop-worker'].map((name) => find(objects, 'Deployment', name))
  const configMap = objects.find((o) => o.kind === 'ConfigMap')!
  let t: TestApp

  beforeAll(async () => {
    t = await createTestApp()
  })
  afterAll(() => t.close())

  it('supplies every setting the app reads, but those left unset on purpose, and no setting it does not know', () => {
    for (const name of Object.keys(LEFT_UNSET)) expect(SETTINGS, name).toContain(name)
    for (const d of deployments) {
      const { names } = settingsOf(d, objects)
      const missing = SETTINGS.filter((s) => !names.has(s) && !(s in LEFT_UNSET))
      expect(missing, d.metadata.name).toEqual([])
      const setAnyway = SETTINGS.filter((s) => names.has(s) && s in LEFT_UNSET)
      expect(setAnyway, d.metadata.name).toEqual([])
      const unknown = [...names].filter((n) => !(SETTINGS as string[]).includes(n))
      expect(unknown, d.metadata.name).toEqual([])
    }
  })

  it('takes every secret-looking setting from the Secret, and the check finds one put in a ConfigMap', () => {
    for (const d of deployments) {
      const { env } = settingsOf(d, objects)
      for (const name of SETTINGS.filter(looksSecret)) {
        if (name in LEFT_UNSET) continue
        expect(env.find((e) => e.name === name)?.valueFrom?.secretKeyRef, `${d.metadata.name} ${name}`).toEqual(
          expect.objectContaining({ name: 'edgeshop-secrets', key: name }),
        )
      }
    }
    const leaked = { ...configMap, data: { ...configMap.data, JWT_SECRET: 'x'.repeat(32), EMAIL_API_KEY: 'k' } }
    expect(secretsInConfigMaps([leaked])).toEqual(['JWT_SECRET', 'EMAIL_API_KEY'])
    expect(SETTINGS.filter(looksSecret)).toEqual(
      expect.arrayContaining([
        'DATABASE_URL',
        'DATABASE_REPLICA_URLS',
        'JWT_SECRET',
        'JWT_PREVIOUS_SECRET',
        'UPSTASH_REDIS_REST_TOKEN',
        'EMAIL_API_KEY',
      ]),
    )
  })

  it('starts the app: the ConfigMap with the Secret filled in is a valid production configuration', () => {
    const secrets = {
      DATABASE_URL: 'postgres://edgeshop:password@postgres:5432/edgeshop',
      JWT_SECRET: 'a-production-secret-that-is-long-enough',
      UPSTASH_REDIS_REST_TOKEN: 'token',
      EMAIL_API_KEY: 'key',
      METRICS_TOKEN: 'a-metrics-token-long-enough',
    }
    const result = parseConfig({ ...configMap.data, ...secrets }, { runtime: 'node' })
    expect(result.ok && result.config.production).toBe(true)
  })

  it('probes the paths the app answers, on the port it listens on', async () => {
    const port = Number(configMap.data?.PORT ?? 3000)
    for (const d of deployments) {
      const c = container(d)
      expect(c.ports).toEqual([{ name: 'http', containerPort: port }])
      expect(configMap.data?.HOST).toBe('0.0.0.0')
      expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' })
      expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' })
    }
    // Unset, the app's defaults are the same port and, in production, every interface.
    const minimal = {
      NODE_ENV: 'production',
      DATA_DIR: '/data',
      JWT_SECRET: 'x'.repeat(32),
      MAILER: 'recording',
      PAYMENT_PROVIDER: 'simulated',
    }
    const defaults = parseConfig(minimal, { runtime: 'node' })
    expect(defaults.ok && [defaults.config.port, defaults.config.host]).toEqual([port, '0.0.0.0'])
    for (const path of ['/healthz', '/readyz']) expect((await t.app.request(path)).status, path).toBe(200)
  })

  it('gives each pod the time its shutdown takes: preStop, the drain, in-flight requests, outbound calls', () => {
    const drain = Number(configMap.data?.SHUTDOWN_DRAIN_MS) / 1000
    const outbound = Number(configMap.data?.EMAIL_TIMEOUT_MS) / 1000
    const [api, worker] = deployments as [K8sObject, K8sObject]
    const preStop = container(api).lifecycle.preStop.exec.command
    expect(preStop[0]).toBe('sleep')
    const pause = Number(preStop[1])
    expect(pause).toBeGreaterThanOrEqual(5)
    expect(api.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(pause + drain + LISTENER_STOP_SECONDS + outbound)
    expect(container(worker).lifecycle).toBeUndefined()
    expect(worker.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(drain + LISTENER_STOP_SECONDS + outbound)
    expect(readFileSync(join(REPO_ROOT, 'src/runtime/process.ts'), 'utf8')).toContain(`listener.stop(${LISTENER_STOP_SECONDS}_000)`)
  })

  it("KEDA's query counts the jobs due and not done, on the migrated schema", async () => {
    const query = find(objects, 'ScaledObject', 'edgeshop-worker').spec.triggers[0].metadata.query as string
    expect(query).toBe(DUE_JOBS_SQL)
    const db = t.database.db
    const insert = (status: string, runAt: string) =>
      runStatement(
        db,
        `insert into jobs (id, name, payload, status, max_attempts, run_at) values (gen_random_uuid(), 'x', '{}', $1, 5, now() + $2::interval)`,
        [status, runAt],
      )
    await insert('pending', '-1 minute')
    await insert('pending', '-1 second')
    await insert('pending', '1 hour') // not due yet
    await insert('succeeded', '-1 minute')
    await insert('dead', '-1 minute')
    const [row] = await runStatement<{ count: unknown }>(db, query, [])
    expect(Number(row?.count)).toBe(2)
  })
})
