import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { DEV_JWT_SECRET } from '../../src/config.ts'
import { type AppServer, startAppServer } from './app-server.ts'
import { startEmailApi } from './email-api.ts'
import { startQStash } from './qstash.ts'
import { acquireServices } from './services.ts'

/*
 * Global setup of one contract project (`contract:<target>`): starts
 * edgeshop the way that target runs in production and hands its base URL to
 * the black-box suite through `inject('baseUrl')`.
 *
 *   embedded  bun, nothing configured: PGlite in a fresh DATA_DIR (the README's first command)
 *   bun       bun with PostgreSQL and Redis (Upstash REST stand-in); embedded job runner
 *   node      node with PostgreSQL and Redis; jobs through QStash (stand-in), HTTP mailer
 *   workerd   wrangler dev (workerd) with PostgreSQL through local Hyperdrive, Redis, QStash, HTTP mailer
 */

export const CONTRACT_JWT_SECRET = 'contract-suite-secret-0123456789abcdef'
export const CONTRACT_ADMIN = { email: 'admin@contract.test', password: 'contract-admin-password' }

/*
 * Every target sits "behind one trusted proxy" (TRUSTED_PROXIES=1), so each
 * test can be its own client with its own X-Forwarded-For (CF-Connecting-IP on
 * workerd) and per-IP rate limits do not leak between tests.
 */
/** Short, so that expiry can be watched; long enough for every other test of an order to finish first. */
export const CONTRACT_ORDER_TTL_SECONDS = 20
/** Short, so that a heartbeat can be watched for. */
export const CONTRACT_SSE_HEARTBEAT_MS = 1000
/** Small, so that the bound is reached with a few streams. */
export const CONTRACT_SSE_MAX_STREAMS_PER_USER = 3
const COMMON = {
  LOG_LEVEL: 'warn',
  TRUSTED_PROXIES: '1',
  ADMIN_EMAIL: CONTRACT_ADMIN.email,
  ADMIN_PASSWORD: CONTRACT_ADMIN.password,
  ORDER_TTL_SECONDS: String(CONTRACT_ORDER_TTL_SECONDS),
  JOB_BACKOFF_BASE_MS: '200',
  JOB_POLL_MS: '100',
  SSE_HEARTBEAT_MS: String(CONTRACT_SSE_HEARTBEAT_MS),
  SSE_MAX_STREAMS_PER_USER: String(CONTRACT_SSE_MAX_STREAMS_PER_USER),
}

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string
    target: string
    /** The secret the target signs access tokens with, so tests can forge and tamper. */
    jwtSecret: string
    /** Whether the target runs with Redis (Upstash REST) for its cache and rate limits. */
    redis: boolean
    orderTtlSeconds: number
  }
}

export default async function setup(project: TestProject) {
  const target = project.name.replace(/^contract:/, '')
  const started = Date.now()
  let server: AppServer
  let cleanup: () => Promise<void>

  if (target === 'embedded') {
    const dataDir = mkdtempSync(join(tmpdir(), 'edgeshop-embedded-'))
    server = await startAppServer('bun', { ...COMMON, DATA_DIR: dataDir })
    cleanup = async () => rmSync(dataDir, { recursive: true, force: true })
  } else {
    const services = await acquireServices()
    const url = await services.migratedDatabase(`contract_${target}`)
    const upstash = await services.upstash()
    const env: Record<string, string> = {
      ...COMMON,
      NODE_ENV: 'production',
      DATABASE_URL: url,
      JWT_SECRET: CONTRACT_JWT_SECRET,
      UPSTASH_REDIS_REST_URL: upstash.url,
      UPSTASH_REDIS_REST_TOKEN: upstash.token,
      PAYMENT_PROVIDER: 'simulated',
    }
    const closers: (() => Promise<void>)[] = []
    const byPort: Record<string, (port: number) => string> = {}
    if (target === 'bun') {
      // Bun: the embedded job runner, and a mailer that records.
      env.MAILER = 'recording'
    } else {
      // Node and workerd: jobs through QStash (the local stand-in, retries sped up), mail through an HTTP email API.
      const mail = await startEmailApi({ apiKey: 'contract-email-key' })
      const qstash = await startQStash({
        token: 'contract-qstash-token',
        currentSigningKey: 'sig_current_contract',
        nextSigningKey: 'sig_next_contract',
        retryDelayScale: 0.001,
      })
      closers.push(
        () => mail.close(),
        () => qstash.close(),
      )
      Object.assign(env, {
        EMAIL_API_URL: mail.url,
        EMAIL_API_KEY: 'contract-email-key',
        EMAIL_FROM: 'shop@contract.test',
        QSTASH_URL: qstash.url,
        QSTASH_TOKEN: qstash.token,
        QSTASH_CURRENT_SIGNING_KEY: 'sig_current_contract',
        QSTASH_NEXT_SIGNING_KEY: 'sig_next_contract',
      })
      byPort.PUBLIC_URL = (port) => `http://127.0.0.1:${port}`
    }
    if (target === 'workerd') {
      // Local Hyperdrive does no pooling: each request starts a PostgreSQL backend of its own (~40-75 ms of CPU),
      // so 200 concurrent checkouts on a busy 2-core machine wait seconds to connect where Cloudflare's pool would
      // hand over a connection at once. The contract is what answers say, not how soon: the bounds get room for
      // that, and latency bounds are held by the lifecycle and reliability tests instead.
      Object.assign(env, { DATABASE_TIMEOUT_MS: '20000', RATE_LIMIT_TIMEOUT_MS: '2000' })
    }
    try {
      server = await startAppServer(target === 'workerd' ? 'workerd' : (target as 'bun' | 'node'), (port) => ({
        ...env,
        ...Object.fromEntries(Object.entries(byPort).map(([k, f]) => [k, f(port)])),
      }))
    } catch (err) {
      await services.release()
      throw err
    }
    cleanup = async () => {
      for (const close of closers) await close()
      await services.release()
    }
  }

  project.provide('baseUrl', server.url)
  project.provide('target', target)
  project.provide('jwtSecret', target === 'embedded' ? DEV_JWT_SECRET : CONTRACT_JWT_SECRET)
  project.provide('redis', target !== 'embedded')
  project.provide('orderTtlSeconds', CONTRACT_ORDER_TTL_SECONDS)
  console.log(`[contract:${target}] ${server.runtime} ready at ${server.url} in ${Date.now() - started} ms`)

  return async () => {
    const code = await server.stop()
    if (code !== 0 && code !== null && target !== 'workerd') console.warn(`[contract:${target}] exited with ${code}:\n${server.output()}`)
    await cleanup()
  }
}
