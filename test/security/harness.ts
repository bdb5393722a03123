import postgres from 'postgres'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { ensureAdmin } from '../../src/features/accounts/service.ts'
import type { SessionBody } from '../contract/helpers.ts'
import { migratedDatabase } from '../support/databases.ts'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'
import { startUpstashRest, type UpstashRestHandle } from '../support/upstash-rest.ts'

/*
 * The app the security suite attacks: the real app, in-process, on its own
 * PostgreSQL database and (unless a test opts out) its own redis-server
 * behind the Upstash REST stand-in, so rate limits and the catalog cache are
 * the production ones. Every request comes "through one trusted proxy" with
 * its own client address, so per-IP limits only bite where a test wants them.
 */

export const SECURITY_JWT_SECRET = 'security-suite-secret-0123456789abcdef'
export const SECURITY_ADMIN = { email: 'security-admin@example.test', password: 'security admin password' }
export const METRICS_TOKEN = 'security-metrics-token-0123456789'
export const PASSWORD = 'a perfectly fine password'

export interface CallOptions {
  token?: string | undefined
  /** A JSON body (serialised here). */
  body?: unknown
  /** A body sent as it is (with `Content-Type: application/json` unless `headers` says otherwise). */
  raw?: string | undefined
  headers?: Record<string, string>
  /** The client address; a fresh one per call unless given. */
  ip?: string
}

export interface ProductBody {
  id: string
  sku: string
  name: string
  stock: number
  priceCents: number
  version: number
  active: boolean
}

export interface OrderBody {
  id: string
  status: string
  items: { productId: string; quantity: number }[]
}

export interface Harness {
  t: TestApp
  /** A direct connection to the app's database, for checks the API cannot make. */
  sql: postgres.Sql
  databaseUrl: string
  adminToken: string
  call(method: string, path: string, opts?: CallOptions): Promise<Response>
  /** Signs up a fresh customer through the API. */
  customer(tag?: string): Promise<SessionBody>
  /** Creates a product as the admin. */
  product(overrides?: Record<string, unknown>): Promise<ProductBody>
  /** Checks out one order for `session`. */
  order(session: SessionBody, items: { productId: string; quantity: number }[]): Promise<OrderBody>
  close(): Promise<void>
}

let ips = 0
/** A client address no other call of this process used. */
export const freshIp = () => {
  ips++
  return `10.${(process.pid >> 8) & 255}.${(process.pid + (ips >> 8)) & 255}.${ips & 255}`
}

export const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`

export interface HarnessOptions {
  tag: string
  env?: Record<string, string>
  /** Default true: Redis (through the Upstash REST stand-in) for rate limits and the cache. */
  redis?: boolean
  poolMax?: number
  timeoutMs?: number
  statementTimeoutMs?: number
}

export async function createHarness(opts: HarnessOptions): Promise<Harness> {
  const databaseUrl = await migratedDatabase(`sec_${opts.tag}`)
  let redis: RedisServerHandle | undefined
  let rest: UpstashRestHandle | undefined
  const env: Record<string, string> = {
    JWT_SECRET: SECURITY_JWT_SECRET,
    TRUSTED_PROXIES: '1',
    RATE_LIMIT_AUTH: '1000/60',
    // A loaded two-core machine can be slow; a limiter answer that misses its budget would be a 503 here, not a finding.
    RATE_LIMIT_TIMEOUT_MS: '5000',
    METRICS_TOKEN,
    JOB_BACKOFF_BASE_MS: '1',
    LOG_LEVEL: 'warn',
    ...opts.env,
  }
  if (opts.redis !== false) {
    redis = await startRedisServer()
    rest = await startUpstashRest({ redisPort: redis.port, token: 'security-upstash-token' })
    env.UPSTASH_REDIS_REST_URL = rest.url
    env.UPSTASH_REDIS_REST_TOKEN = rest.token
  }
  const database = createPostgresDatabase({
    url: databaseUrl,
    poolMax: opts.poolMax ?? 5,
    timeoutMs: opts.timeoutMs ?? 3000,
    statementTimeoutMs: opts.statementTimeoutMs ?? 10_000,
  })
  const t = await createTestApp({ env, database })
  await ensureAdmin(t.services.accounts(t.services.scope()), SECURITY_ADMIN)
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })

  const call = (method: string, path: string, o: CallOptions = {}) => {
    const ip = o.ip ?? freshIp()
    const headers: Record<string, string> = { 'X-Forwarded-For': ip }
    if (o.body !== undefined || o.raw !== undefined) headers['Content-Type'] = 'application/json'
    if (o.token !== undefined) headers.Authorization = `Bearer ${o.token}`
    Object.assign(headers, o.headers)
    const body = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body))
    return Promise.resolve(t.app.request(path, { method, headers, body }))
  }
  const expectJson = async <T>(res: Response, status: number, what: string): Promise<T> => {
    const text = await res.text()
    if (res.status !== status) throw new Error(`${what}: ${res.status} ${text}`)
    return JSON.parse(text) as T
  }

  const login = await call('POST', '/v1/auth/login', { body: SECURITY_ADMIN })
  const adminToken = (await expectJson<SessionBody>(login, 200, 'admin login')).accessToken

  return {
    t,
    sql,
    databaseUrl,
    adminToken,
    call,
    async customer(tag = 'customer') {
      const email = `${tag}.${unique()}@example.test`
      const res = await call('POST', '/v1/auth/signup', { body: { email, password: PASSWORD, name: `Test ${tag}` } })
      return expectJson<SessionBody>(res, 201, 'signup')
    },
    async product(overrides = {}) {
      const res = await call('POST', '/v1/products', {
        token: adminToken,
        body: { sku: `SEC-${unique()}`, name: 'Security product', priceCents: 500, stock: 50, category: 'security', ...overrides },
      })
      return expectJson<ProductBody>(res, 201, 'create product')
    },
    async order(session, items) {
      const res = await call('POST', '/v1/orders', {
        token: session.accessToken,
        body: { items },
        headers: { 'Idempotency-Key': `order-${unique()}` },
      })
      return expectJson<OrderBody>(res, 201, 'checkout')
    },
    async close() {
      await t.close()
      await sql.end({ timeout: 5 })
      await rest?.close()
      await redis?.stop()
    },
  }
}
