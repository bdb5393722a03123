import { spawnSync } from 'node:child_process'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { type PostgresServer, startPostgres, stopAll } from '../support/postgres.ts'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { createRespClient } from '../support/resp.ts'
import { applyMigrations } from '../support/services.ts'
import { startUpstashRest, type UpstashRestHandle } from '../support/upstash-rest.ts'

/*
 * Bun and Node with DATABASE_REPLICA_URLS against a real streaming replica
 * (a hot standby made with `pg_basebackup -R`): list reads are served by the
 * replica (its own statistics count them), a client reads its own write
 * while the replica's replay is paused, the lag is measured and reported, and
 * a stopped replica costs no client an error.
 */

const SECRET = 'replicas-test-secret-0123456789abcdef'
const MAX_LAG_MS = 3000
let primary: PostgresServer
let standby: PostgresServer
let sql: postgres.Sql
let onStandby: postgres.Sql
const servers: AppServer[] = []
let product: string

beforeAll(async () => {
  primary = await startPostgres({ synchronousCommit: true })
  const url = await primary.createDatabase('shop')
  await applyMigrations(url)
  sql = postgres(url, { max: 1, onnotice: () => {} })
  product = uuidv7()
  await sql`insert into products (id, sku, name, description, price_cents, currency, stock, category)
            values (${product}, 'REPL-1', 'Replicated', '', 500, 'USD', 1000, 'replicas')`
  standby = await startPostgres({ standbyOf: primary })
  onStandby = postgres(standby.url('shop'), { max: 1, onnotice: () => {} })
  const settings = {
    DATABASE_URL: url,
    DATABASE_REPLICA_URLS: standby.url('shop'),
    REPLICA_MAX_LAG_MS: String(MAX_LAG_MS),
    REPLICA_POLL_MS: '50',
    DATABASE_TIMEOUT_MS: '1000',
    // No L1: every read below reaches a database, so where it went can be counted.
    CACHE_L1_MAX_ENTRIES: '0',
    CACHE_L1_TTL_MS: '2000',
    JWT_SECRET: SECRET,
    LOG_LEVEL: 'warn',
  }
  servers.push(...(await Promise.all([startAppServer('bun', settings), startAppServer('node', settings)])))
}, 180_000)

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()))
  await stopAll([onStandby, sql], [standby, primary])
})

/** The value of one series in a server's /metrics, 0 when absent. */
async function metric(server: AppServer, series: string): Promise<number> {
  const text = await (await fetch(`${server.url}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line ? Number(line.slice(series.length + 1)) : 0
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const REPLICA_READS = 'edgeshop_db_reads_total{target="replica1",reason="healthy"}'
const replicaUp = (s: AppServer) => metric(s, 'edgeshop_replica_up{replica="replica1"}')

/** Index and sequential scans of `products` that the standby itself ran. */
async function standbyProductScans(): Promise<number> {
  const [row] =
    await onStandby`select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) as n from pg_stat_user_tables where relname = 'products'`
  return Number(row?.n ?? 0)
}

async function signup(server: AppServer): Promise<Record<string, string>> {
  const res = await fetch(`${server.url}/v1/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `replicas-${uuidv7()}@example.test`, password: 'replicas test password', name: 'Replicas' }),
  })
  expect(res.status).toBe(201)
  return { authorization: `Bearer ${((await res.json()) as { accessToken: string }).accessToken}` }
}

async function checkout(server: AppServer, auth: Record<string, string>) {
  const res = await fetch(`${server.url}/v1/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': uuidv7(), ...auth },
    body: JSON.stringify({ items: [{ productId: product, quantity: 1 }] }),
  })
  expect(res.status).toBe(201)
  const writtenAt = res.headers.get('x-written-at')
  const cookie = res.headers.get('set-cookie')
  expect(writtenAt).toMatch(/^\d+$/)
  expect(cookie).toMatch(new RegExp(`^edgeshop-written-at=${writtenAt}; Max-Age=\\d+; Path=/; HttpOnly; SameSite=Lax`))
  return { id: ((await res.json()) as { id: string }).id, cookie: cookie!.split(';')[0]!, writtenAt: writtenAt! }
}

describe.each(['bun', 'node'] as const)('read replicas on %s', (runtime) => {
  const server = () => servers.find((s) => s.runtime === runtime)!

  it('serves list and product reads from the replica, counted by the app and by the replica itself', async () => {
    await until('the replica is polled', async () => (await replicaUp(server())) === 1)
    const [readsBefore, scansBefore] = [await metric(server(), REPLICA_READS), await standbyProductScans()]
    for (let i = 0; i < 10; i++) {
      const list = await fetch(`${server().url}/v1/products?limit=5`)
      expect(list.status).toBe(200)
      expect(((await list.json()) as { items: { id: string }[] }).items.map((p) => p.id)).toContain(product)
      expect((await fetch(`${server().url}/v1/products/${product}`)).status).toBe(200)
    }
    expect((await metric(server(), REPLICA_READS)) - readsBefore).toBe(20)
    // A backend reports its statistics within a second or so of going idle.
    await until('the standby counts the scans', async () => (await standbyProductScans()) - scansBefore >= 20)
  })

  it('answers a writer’s read from the primary while the replica has not replayed the write, and reports the lag', async () => {
    const auth = await signup(server())
    await until('the replica is polled', async () => (await replicaUp(server())) === 1)
    await onStandby`select pg_wal_replay_pause()`
    try {
      const order = await checkout(server(), auth)
      const primaryReads = 'edgeshop_db_reads_total{target="primary",reason="read_your_writes"}'
      const before = await metric(server(), primaryReads)
      // With the cookie, or the header: the primary answers.
      const byCookie = await fetch(`${server().url}/v1/orders/${order.id}`, { headers: { ...auth, cookie: order.cookie } })
      expect(byCookie.status).toBe(200)
      const byHeader = await fetch(`${server().url}/v1/orders`, { headers: { ...auth, 'x-written-at': order.writtenAt } })
      expect(((await byHeader.json()) as { items: { id: string }[] }).items.map((o) => o.id)).toContain(order.id)
      expect((await metric(server(), primaryReads)) - before).toBe(2)
      // Without either, the replica answers while it is within the bound: it has not replayed the order yet.
      expect((await fetch(`${server().url}/v1/orders/${order.id}`, { headers: auth })).status).toBe(404)
      expect(await metric(server(), 'edgeshop_replica_lag_seconds{replica="replica1"}')).toBeLessThan(MAX_LAG_MS / 1000)
      // Past the bound the replica is skipped: everyone reads the primary, and the lag is reported.
      await until(
        'the lag passes the bound',
        async () => (await metric(server(), 'edgeshop_replica_lag_seconds{replica="replica1"}')) * 1000 > MAX_LAG_MS,
      )
      expect((await fetch(`${server().url}/v1/orders/${order.id}`, { headers: auth })).status).toBe(200)
      expect(await metric(server(), 'edgeshop_db_reads_total{target="primary",reason="no_healthy_replica"}')).toBeGreaterThan(0)
      expect(await metric(server(), 'edgeshop_replica_lag_bytes{replica="replica1"}')).toBeGreaterThan(0)
      // Prometheus's own linter finds nothing to say of the replica series.
      const scrape = await (await fetch(`${server().url}/metrics`)).text()
      expect(scrape).toMatch(/^# TYPE edgeshop_replica_lag_seconds gauge$/m)
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: scrape, encoding: 'utf8' })
      expect(`${lint.stdout}${lint.stderr}`).toBe('')
      expect(lint.status).toBe(0)
    } finally {
      await onStandby`select pg_wal_replay_resume()`
    }
    await until(
      'the replica catches up',
      async () => (await metric(server(), 'edgeshop_replica_lag_seconds{replica="replica1"}')) * 1000 < 500,
    )
  })

  it('falls back to the primary when the replica stops, with no error for any client, and returns to it', async () => {
    await standby.pause()
    try {
      for (let i = 0; i < 20; i++) expect((await fetch(`${server().url}/v1/products?limit=3&q=Repl`)).status).toBe(200)
      await until('the replica is seen down', async () => (await replicaUp(server())) === 0)
      for (let i = 0; i < 5; i++) expect((await fetch(`${server().url}/v1/products/${product}`)).status).toBe(200)
      const toPrimary =
        (await metric(server(), 'edgeshop_db_reads_total{target="primary",reason="no_healthy_replica"}')) +
        (await metric(server(), 'edgeshop_db_reads_total{target="primary",reason="replica_failed"}'))
      expect(toPrimary).toBeGreaterThanOrEqual(25)
    } finally {
      await standby.resume()
    }
    await until('the replica is back', async () => (await replicaUp(server())) === 1, 30_000)
    const before = await metric(server(), REPLICA_READS)
    expect((await fetch(`${server().url}/v1/products?limit=4`)).status).toBe(200)
    expect(await metric(server(), REPLICA_READS)).toBe(before + 1)
  })
})

describe('the catalog cache over a lagging replica, two instances sharing Redis', () => {
  const ADMIN = { email: 'replica-admin@example.test', password: 'replica admin password' }
  let redis: RedisServerHandle
  let rest: UpstashRestHandle
  const pair: AppServer[] = []

  beforeAll(async () => {
    redis = await startRedisServer()
    rest = await startUpstashRest({ redisPort: redis.port, token: 'replicas-redis-token' })
    const settings = {
      DATABASE_URL: primary.url('shop'),
      DATABASE_REPLICA_URLS: standby.url('shop'),
      REPLICA_MAX_LAG_MS: String(MAX_LAG_MS),
      REPLICA_POLL_MS: '50',
      UPSTASH_REDIS_REST_URL: rest.url,
      UPSTASH_REDIS_REST_TOKEN: 'replicas-redis-token',
      // L2 only: what one instance shows of another's write is what Redis and the loads make of it. Redis is given
      // time to answer: a read that stops waiting for it cannot see the other instance's tombstone (docs/KUBERNETES.md).
      CACHE_L1_MAX_ENTRIES: '0',
      CACHE_L2_TIMEOUT_MS: '2000',
      CACHE_L1_TTL_MS: '2000',
      JWT_SECRET: SECRET,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      LOG_LEVEL: 'warn',
    }
    pair.push(...(await Promise.all([startAppServer('bun', settings), startAppServer('node', settings)])))
  }, 180_000)

  afterAll(async () => {
    await Promise.all(pair.map((s) => s.stop()))
    await rest?.close()
    await redis?.stop()
  })

  it('a product changed on one instance while the replica lags is shown changed by the other, from the first read, without a cookie', async () => {
    const [writer, reader] = pair as [AppServer, AppServer]
    const login = await fetch(`${writer.url}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(ADMIN),
    })
    expect(login.status).toBe(200)
    const auth = { authorization: `Bearer ${((await login.json()) as { accessToken: string }).accessToken}` }
    for (const s of pair) await until('the replica is polled', async () => (await replicaUp(s)) === 1)
    // Both instances have the product and the first page in Redis, read from the replica.
    for (const s of pair) {
      expect((await fetch(`${s.url}/v1/products/${product}`)).status).toBe(200)
      expect((await fetch(`${s.url}/v1/products?limit=5`)).status).toBe(200)
    }
    const raw = createRespClient({ port: redis.port })
    const generation = async () => Number(await raw.send(['GET', 'edgeshop:c:products:gen']))
    const generationBefore = await generation()
    await onStandby`select pg_wal_replay_pause()`
    try {
      const name = `Renamed ${uuidv7()}`
      const changed = await fetch(`${writer.url}/v1/products/${product}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', ...auth },
        body: JSON.stringify({ name }),
      })
      expect(changed.status).toBe(200)
      const { version } = (await changed.json()) as { version: number }
      // The writer's invalidations reach Redis off the response path (waitUntil): the tombstone and the list's generation.
      await expect
        .poll(async () => String(await raw.send(['GET', `edgeshop:c:product:${product}`])), { timeout: 10_000 })
        .toBe(`${version}\n`)
      await expect.poll(generation, { timeout: 10_000 }).toBeGreaterThan(generationBefore)
      const fromPrimary = 'edgeshop_db_reads_total{target="primary",reason="read_your_writes"}'
      const before = await metric(reader, fromPrimary)
      for (const s of [reader, writer]) {
        const one = (await (await fetch(`${s.url}/v1/products/${product}`)).json()) as { name: string; version: number }
        expect(one, s.runtime).toMatchObject({ name, version })
        const page = (await (await fetch(`${s.url}/v1/products?limit=5`)).json()) as { items: { id: string; name: string }[] }
        expect(page.items.find((p) => p.id === product)?.name, s.runtime).toBe(name)
      }
      // The replica, still within its bound, had not replayed the change: the reader's loads went to the primary.
      expect(await metric(reader, 'edgeshop_replica_lag_seconds{replica="replica1"}')).toBeLessThan(MAX_LAG_MS / 1000)
      expect((await metric(reader, fromPrimary)) - before).toBeGreaterThanOrEqual(2)
    } finally {
      await onStandby`select pg_wal_replay_resume()`
      await raw.close()
    }
  })
})
