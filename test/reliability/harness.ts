import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, mkdirSync, rmSync, type WriteStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { type AppServer, ROOT, type Runtime, type StartOptions, startAppServer } from '../support/app-server.ts'
import { startEmailApi } from '../support/email-api.ts'
import { freePort } from '../support/free-port.ts'
import type { ShopFixture } from '../support/load-generator.ts'
import { type PostgresServer, startPostgres } from '../support/postgres.ts'
import { type QStashStandIn, startQStash } from '../support/qstash.ts'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { createMigratedDatabase } from '../support/services.ts'

/*
 * The pieces every reliability scenario is built from: one PostgreSQL and
 * one redis-server for the run (so that a scenario can stop and start them),
 * and per scenario a fresh database, its own Redis database behind its own
 * Upstash REST stand-in, its own email provider and, when asked, its own
 * QStash stand-in — then edgeshop as real Bun or Node processes on top.
 *
 * The Upstash REST stand-in runs as a process of its own: in this process
 * it would answer only when the load generator lets the event loop go, and
 * the app's rate-limit budget would measure the load generator.
 * Everything each app process prints goes to a file under LOG_DIR.
 */

/** Where the output of every app process of the run is kept. */
export const LOG_DIR = join(tmpdir(), 'edgeshop-reliability-logs')

export const ADMIN = { email: 'admin@reliability.test', password: 'reliability admin password' }
const JWT_SECRET = 'reliability-suite-secret-0123456789abcdef'
const UPSTASH_TOKEN = 'reliability-upstash-token'
const EMAIL_KEY = 'reliability-email-key'
const QSTASH = { token: 'reliability-qstash-token', currentSigningKey: 'sig_current_reliability', nextSigningKey: 'sig_next_reliability' }
/** Short, so that unpaid orders expire (and release their stock) while the load runs. */
export const ORDER_TTL_SECONDS = 10
/** How long a request may wait for the database before it is answered 503 (the default, stated). */
export const DATABASE_TIMEOUT_MS = 3000
/**
 * The rate limiter's budget. The default (300 ms) assumes a limiter a few
 * milliseconds away and a process that gets the CPU; here the load
 * generator, the stand-ins and the app share two cores, and a starved event
 * loop would read as Redis being down. Fail-closed itself is what the Redis
 * outage proves.
 */
export const RATE_LIMIT_TIMEOUT_MS = 1500

export interface Stack {
  pg: PostgresServer
  redis: RedisServerHandle
  /** A fresh Redis database index for each Upstash REST stand-in. */
  nextRedisDb(): number
  stop(): Promise<void>
}

export async function startStack(): Promise<Stack> {
  rmSync(LOG_DIR, { recursive: true, force: true })
  mkdirSync(LOG_DIR, { recursive: true })
  // Synchronous commits: the suite crashes PostgreSQL and then counts on every acknowledged commit.
  const [pg, redis] = await Promise.all([startPostgres({ synchronousCommit: true }), startRedisServer({ databases: 32 })])
  let db = 0
  return {
    pg,
    redis,
    nextRedisDb: () => ++db % 32,
    async stop() {
      await Promise.all([pg.stop(), redis.stop()])
    },
  }
}

export type EmailApi = Awaited<ReturnType<typeof startEmailApi>>

export interface UpstashRest {
  url: string
  token: string
  close(): Promise<void>
}

/** The Upstash REST stand-in as a Bun process of its own, in front of Redis database `db`. */
async function startUpstashProcess(redisPort: number, db: number): Promise<UpstashRest> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const child: ChildProcess = spawn(process.env.BUN_BIN ?? 'bun', ['test/support/upstash-rest-cli.ts'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        REDIS_HOST: '127.0.0.1',
        REDIS_PORT: String(redisPort),
        REDIS_DB: String(db),
        UPSTASH_TOKEN,
        PORT: String(port),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const kill = () => child.kill('SIGKILL')
    process.once('exit', kill)
    let out = ''
    const exited = new Promise<void>((r) => child.once('exit', () => r()))
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000)
      const see = (d: Buffer) => {
        out += d.toString()
        if (out.includes('Upstash REST stand-in on')) {
          clearTimeout(timer)
          resolve(true)
        }
      }
      child.stdout!.on('data', see)
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()))
      child.once('exit', () => {
        clearTimeout(timer)
        resolve(false)
      })
    })
    if (ready) {
      return {
        url: `http://127.0.0.1:${port}`,
        token: UPSTASH_TOKEN,
        async close() {
          child.kill('SIGTERM')
          const timer = setTimeout(kill, 3000)
          await exited
          clearTimeout(timer)
          process.off('exit', kill)
        },
      }
    }
    kill()
    await exited
    process.off('exit', kill)
    if (attempt === 3) throw new Error(`the Upstash REST stand-in did not start:\n${out}`)
  }
}

export interface Deployment {
  name: string
  databaseUrl: string
  /** A client of the deployment's database, for seeding figures and invariant checks. */
  sql: postgres.Sql
  email: EmailApi
  upstash: UpstashRest
  qstash: QStashStandIn | undefined
  /** Starts an edgeshop process of this deployment (a fixed port to start it again where it was). */
  start(runtime: Runtime, opts?: StartOptions & { env?: Record<string, string> }): Promise<AppServer>
  /** Seeds products and customers through the API of `baseUrl`; resolves with what the load needs and the initial stock. */
  seed(baseUrl: string): Promise<{ shop: ShopFixture; initialStock: Map<string, number> }>
  close(): Promise<void>
}

/**
 * A deployment in Postgres mode with Redis, an HTTP email provider, and
 * QStash (`qstash: true`) or the embedded job runner.
 */
export async function deploy(stack: Stack, name: string, opts: { qstash: boolean }): Promise<Deployment> {
  const databaseUrl = await createMigratedDatabase(stack.pg, `reliability_${name}`)
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  const [email, upstash, qstash] = await Promise.all([
    startEmailApi({ apiKey: EMAIL_KEY }),
    startUpstashProcess(stack.redis.port, stack.nextRedisDb()),
    // Retries sped up a hundredfold: 0.12 s, 1.5 s, 18 s, … instead of 12 s, 2m28s, 30 min, …
    opts.qstash ? startQStash({ ...QSTASH, retryDelayScale: 0.01 }) : undefined,
  ])
  const settings = (port: number, extra: Record<string, string>): Record<string, string> => ({
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_MAX: '16',
    DATABASE_TIMEOUT_MS: String(DATABASE_TIMEOUT_MS),
    JWT_SECRET,
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    PAYMENT_PROVIDER: 'simulated',
    EMAIL_API_URL: email.url,
    EMAIL_API_KEY: EMAIL_KEY,
    EMAIL_FROM: 'shop@reliability.test',
    UPSTASH_REDIS_REST_URL: upstash.url,
    UPSTASH_REDIS_REST_TOKEN: upstash.token,
    // Every client comes from 127.0.0.1: the limits must not be what answers.
    RATE_LIMIT_AUTH: '1000000/60',
    RATE_LIMIT_TIMEOUT_MS: String(RATE_LIMIT_TIMEOUT_MS),
    ORDER_TTL_SECONDS: String(ORDER_TTL_SECONDS),
    SCHEDULER_TICK_SECONDS: '1',
    JOB_BACKOFF_BASE_MS: '200',
    JOB_POLL_MS: '100',
    ...(qstash
      ? {
          QSTASH_URL: qstash.url,
          QSTASH_TOKEN: qstash.token,
          QSTASH_CURRENT_SIGNING_KEY: QSTASH.currentSigningKey,
          QSTASH_NEXT_SIGNING_KEY: QSTASH.nextSigningKey,
          PUBLIC_URL: `http://127.0.0.1:${port}`,
        }
      : {}),
    ...extra,
  })
  let started = 0
  const logs: WriteStream[] = []
  return {
    name,
    databaseUrl,
    sql,
    email,
    upstash,
    qstash,
    start: (runtime, startOpts = {}) => {
      const log = createWriteStream(join(LOG_DIR, `${name}-${runtime}-${++started}.log`))
      logs.push(log)
      return startAppServer(runtime, (port) => settings(port, startOpts.env ?? {}), {
        ...startOpts,
        onOutput: (text) => {
          log.write(text)
          startOpts.onOutput?.(text)
        },
      })
    },
    seed: (baseUrl) => seedShop(baseUrl, sql),
    async close() {
      await Promise.allSettled([sql.end({ timeout: 2 }), email.close(), upstash.close(), qstash?.close()])
      for (const log of logs) log.end()
    },
  }
}

const PRODUCTS = 40
/** The first products are scarce, so that checkouts compete for the last units and some are refused. */
const SCARCE = 10
const CUSTOMERS = 32

async function seedShop(baseUrl: string, sql: postgres.Sql) {
  const post = async (path: string, body: unknown, token?: string) => {
    const res = await fetch(`${baseUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    })
    const json = (await res.json()) as Record<string, unknown>
    if (res.status >= 300) throw new Error(`seeding: ${path} answered ${res.status} ${JSON.stringify(json)}`)
    return json
  }
  const admin = (await post('/v1/auth/login', ADMIN)).accessToken as string
  const products: ShopFixture['products'] = []
  for (let i = 0; i < PRODUCTS; i++) {
    const category = `c${i % 4}`
    const p = await post(
      '/v1/products',
      { sku: `REL-${i}`, name: `Reliability item ${i}`, priceCents: 100 + 37 * i, stock: i < SCARCE ? 10 + i : 5000, category },
      admin,
    )
    products.push({ id: p.id as string, category })
  }
  const customers: ShopFixture['customers'] = []
  for (let batch = 0; batch < CUSTOMERS; batch += 8) {
    const made = await Promise.all(
      Array.from({ length: Math.min(8, CUSTOMERS - batch) }, async (_, k) => {
        const email = `customer${batch + k}@reliability.test`
        const password = 'reliability customer password'
        const session = await post('/v1/auth/signup', { email, password, name: `Customer ${batch + k}` })
        return { email, password, accessToken: session.accessToken as string }
      }),
    )
    customers.push(...made)
  }
  const rows = await sql<{ id: string; stock: number }[]>`select id, stock from products`
  return { shop: { products, customers }, initialStock: new Map(rows.map((r) => [r.id, r.stock])) }
}

/** Resolves at `at` (epoch ms). */
export const sleepUntil = (at: number) => new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())))

/** GETs `url` until `ok(status, body)` holds; resolves with the time that took, or rejects after `timeoutMs`. */
export async function pollUntil(url: string, ok: (status: number, body: unknown) => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now()
  for (;;) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(3000) })
      const body = await res.json().catch(() => undefined)
      if (ok(res.status, body)) return Date.now() - started
    } catch {}
    if (Date.now() - started > timeoutMs) throw new Error(`${url} did not answer as expected within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
