import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEV_JWT_SECRET } from '../../src/config.ts'
import { runCommand } from '../support/run-command.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'
import { METRICS_TOKEN, SECURITY_JWT_SECRET } from './harness.ts'
import { loadDocument, type OpenApiDocument, type Operation, operations, paramsIn, walk } from './openapi-model.ts'
import { exampleRequest, expectSafeAnswer, type Fixtures } from './requests.ts'

/*
 * API8 (security misconfiguration), OWASP API Security Top 10 (2023):
 * production refuses the development defaults at start, on Bun and Node; and
 * with the database down, no route answers with a 500 or a driver's message.
 * Headers and CORS on real servers: http-surface.test.ts. And API7 (server
 * side request forgery): no request carries an address the server would call.
 */

const bun = process.env.BUN_BIN ?? 'bun'

describe('API8: production refuses development defaults', () => {
  const production = {
    NODE_ENV: 'production',
    DATABASE_URL: 'postgres://edgeshop:not-a-real-password@127.0.0.1:9/edgeshop',
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
  }
  const runtimes = [
    ['bun', bun, 'src/runtime/bun.ts'],
    ['node', process.execPath, 'src/runtime/node.ts'],
  ] as const

  it.each(runtimes)('%s will not start with the development signing secret, and does not print it', async (_, cmd, file) => {
    const res = await runCommand(cmd, [file], { ...production, JWT_SECRET: DEV_JWT_SECRET })
    expect(res.code).toBe(1)
    expect(res.out).toMatch(/JWT_SECRET: the development secret is refused in production/)
    expect(res.out).not.toContain(DEV_JWT_SECRET)
    expect(res.out).not.toContain('not-a-real-password')
  })

  it.each(runtimes)('%s will not start without an explicit payment provider, mailer and secret, naming each', async (_, cmd, file) => {
    const res = await runCommand(cmd, [file], { NODE_ENV: 'production', DATABASE_URL: production.DATABASE_URL })
    expect(res.code).toBe(1)
    for (const setting of ['JWT_SECRET', 'PAYMENT_PROVIDER', 'EMAIL_API_URL']) expect(res.out).toContain(setting)
  })
})

describe('API8: nothing internal leaks while the database is down', () => {
  let t: TestApp
  let doc: OpenApiDocument
  let ops: Operation[]
  let tokens: { admin: string; customer: string }
  const fx: Fixtures = {
    productId: '01a20000-0000-7000-8000-0000000000a1',
    orderId: '01a20000-0000-7000-8000-0000000000a2',
    jobId: '01a20000-0000-7000-8000-0000000000a3',
    jobName: 'payment.capture',
    refreshToken: 'r'.repeat(43),
  }

  beforeAll(async () => {
    t = await createTestApp({ database: 'unreachable', env: { JWT_SECRET: SECURITY_JWT_SECRET, METRICS_TOKEN, LOG_LEVEL: 'error' } })
    doc = await loadDocument((path) => Promise.resolve(t.app.request(path)))
    ops = operations(doc)
    tokens = {
      admin: (await t.services.tokens.sign({ id: '01a20000-0000-7000-8000-0000000000b1', role: 'admin' })).token,
      customer: (await t.services.tokens.sign({ id: '01a20000-0000-7000-8000-0000000000b2', role: 'customer' })).token,
    }
  })
  afterAll(() => t?.close())

  it('every route answers within the bound: 503 service_unavailable with Retry-After, or its usual answer where it needs no database — never a 500', async () => {
    let unavailable = 0
    for (const op of ops) {
      const spec = exampleRequest(doc, op, fx)
      const token =
        op.access === 'admin'
          ? tokens.admin
          : op.access === 'customer'
            ? tokens.customer
            : op.access === 'metrics'
              ? METRICS_TOKEN
              : undefined
      const started = performance.now()
      const res = await t.app.request(spec.path, {
        method: spec.method,
        headers: { ...spec.headers, ...(token ? { Authorization: `Bearer ${token}` } : {}) },
        body: spec.body,
      })
      const answer = await expectSafeAnswer(res, op.id, op)
      expect(performance.now() - started, op.id).toBeLessThan(3000)
      expect(answer.status, `${op.id}: ${answer.text}`).not.toBe(500)
      expect(answer.text, op.id).not.toMatch(/127\.0\.0\.1:9|ECONNREFUSED|edgeshop:x@/)
      if (answer.status === 503) {
        unavailable++
        if (op.path !== '/readyz') expect((answer.json as { code: string }).code, op.id).toBe('service_unavailable')
        expect(res.headers.get('retry-after'), op.id).toBe('1')
      }
    }
    expect(unavailable).toBeGreaterThanOrEqual(10)
  })
})

describe('API7: no request names an address for the server to call', () => {
  it('no body field, query or header of any route is a URL, a host or a callback: the only outbound calls go where the configuration says', async () => {
    const t = await createTestApp({ database: 'unreachable' })
    const doc = await loadDocument((path) => Promise.resolve(t.app.request(path)))
    await t.close()
    const suspicious: string[] = []
    const looksLikeAddress = (name: string, format: string | undefined) =>
      /url|uri|host|callback|webhook|redirect|endpoint|link/i.test(name) || format === 'uri' || format === 'url' || format === 'hostname'
    let fields = 0
    for (const op of operations(doc)) {
      if (op.body)
        walk(doc, op.body, `${op.id} body`, (s, at) => {
          fields++
          if (looksLikeAddress(at.split('.').at(-1) ?? '', s.format)) suspicious.push(at)
        })
      for (const p of [...paramsIn(op, 'query'), ...paramsIn(op, 'header'), ...paramsIn(op, 'path')]) {
        fields++
        if (looksLikeAddress(p.name, p.schema.format)) suspicious.push(`${op.id} ${p.in} ${p.name}`)
      }
    }
    expect(suspicious).toEqual([])
    expect(fields).toBeGreaterThanOrEqual(40)
  })
})
