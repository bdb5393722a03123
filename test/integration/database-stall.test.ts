import { sql } from 'drizzle-orm'
import postgres from 'postgres'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { type DatabaseHandle, isDatabaseUnavailable, runStatement } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { client, expectProblem, loginAdmin, signupCustomer } from '../contract/helpers.ts'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts'

/*
 * A PostgreSQL that accepts but never answers — a network partition, a
 * frozen primary — behind a TCP proxy switched to a stall (nothing moves,
 * nothing is closed). Unlike a database that is down, nothing fails: a
 * statement on a pooled connection just waits, until TCP gives up minutes
 * later. The promise (README, docs/API.md): every statement is answered or
 * fails as unavailable within DATABASE_TIMEOUT_MS + STATEMENT_TIMEOUT_MS,
 * and when the database answers again the same process serves again.
 */

/** Scheduling slack on a two-core machine shared with other test runs. */
const SLACK_MS = 2000

/** How `work` ended and when; `hung` when it had not settled within `withinMs`. */
async function settle(work: Promise<unknown>, withinMs: number): Promise<{ outcome: string; ms: number; error?: unknown }> {
  const started = Date.now()
  let timer: ReturnType<typeof setTimeout> | undefined
  const hung = new Promise<{ outcome: string; ms: number }>((r) => {
    timer = setTimeout(() => r({ outcome: 'hung', ms: Date.now() - started }), withinMs)
  })
  const ended = work.then(
    () => ({ outcome: 'ok', ms: Date.now() - started }),
    (error: unknown) => ({ outcome: isDatabaseUnavailable(error) ? 'unavailable' : 'other error', ms: Date.now() - started, error }),
  )
  try {
    return await Promise.race([ended, hung])
  } finally {
    clearTimeout(timer)
  }
}

describe('the database layer, with its statements on a stalled connection', () => {
  const TIMEOUT_MS = 500
  const STATEMENT_TIMEOUT_MS = 1000
  const BOUND_MS = TIMEOUT_MS + STATEMENT_TIMEOUT_MS
  let url: string
  let direct: postgres.Sql
  let proxy: TcpProxy
  let handle: DatabaseHandle & { sql: postgres.Sql }

  beforeAll(async () => {
    url = await migratedDatabase('stall')
    direct = postgres(url, { max: 1, onnotice: () => {} })
    return () => direct.end({ timeout: 1 })
  })

  /** A pool of `poolMax` connections through a fresh proxy, every connection open. */
  async function openPool(poolMax: number) {
    proxy = await startTcpProxy(Number(new URL(url).port))
    const viaProxy = url.replace(`:${new URL(url).port}/`, `:${proxy.port}/`)
    handle = createPostgresDatabase({ url: viaProxy, poolMax, timeoutMs: TIMEOUT_MS, statementTimeoutMs: STATEMENT_TIMEOUT_MS })
    await Promise.all(Array.from({ length: poolMax }, () => handle.db.execute(sql`select pg_sleep(0.05)`)))
    expect(proxy.accepted).toBe(poolMax)
  }

  /** After the stall: the whole pool serves again, plain queries and transactions, without a new client. */
  async function expectRecovery(poolMax: number) {
    proxy.thaw()
    await vi.waitFor(async () => expect((await settle(Promise.resolve(handle.db.execute(sql`select 1`)), 2000)).outcome).toBe('ok'), {
      timeout: 10_000,
    })
    const work = [
      ...Array.from({ length: poolMax + 1 }, () => Promise.resolve(handle.db.execute(sql`select pg_sleep(0.05)`))),
      handle.db.transaction((tx) => tx.execute(sql`select 2`)),
    ]
    expect((await settle(Promise.all(work), 5000)).outcome).toBe('ok')
  }

  afterEach(async () => {
    proxy?.thaw()
    await handle?.close()
    await proxy?.close()
  })

  it('a query already sent on a pooled connection fails as unavailable within the bound, and the pool comes back', async () => {
    await openPool(2)
    const query = Promise.resolve(handle.db.execute(sql`select pg_sleep(0.3), 'stall-a' as tag`))
    await vi.waitFor(async () => {
      const [row] = await direct`select count(*)::int as n from pg_stat_activity where query like '%stall-a%' and pid <> pg_backend_pid()`
      expect(row!.n).toBe(1)
    })
    proxy.freeze()
    expect((await settle(query, BOUND_MS + SLACK_MS)).outcome).toBe('unavailable')
    await expectRecovery(2)
  })

  it('a transaction whose next statement, or whose COMMIT, meets the stall fails as unavailable within the bound', async () => {
    await openPool(2)
    const midway = handle.db.transaction(async (tx) => {
      await tx.execute(sql`select 1`)
      proxy.freeze()
      await tx.execute(sql`select 2`)
    })
    expect((await settle(midway, BOUND_MS + SLACK_MS)).outcome).toBe('unavailable')
    await expectRecovery(2)

    const committing = handle.db.transaction(async (tx) => {
      await tx.execute(sql`select 1`)
      proxy.freeze() // the COMMIT that follows the callback goes out into the stall
    })
    expect((await settle(committing, BOUND_MS + SLACK_MS)).outcome).toBe('unavailable')
    await expectRecovery(2)
  })

  it('pipelined statements — runStatement in a transaction, and queries sharing one busy connection — all fail within the bound', async () => {
    await openPool(1)
    const inTransaction = handle.db.transaction(async (tx) => {
      await tx.execute(sql`select 1`)
      const statements = [1, 2, 3].map((n) => runStatement(tx, 'select $1::int as n, pg_sleep(0.05)', [n]))
      proxy.freeze()
      await Promise.all(statements)
    })
    expect((await settle(inTransaction, BOUND_MS + SLACK_MS)).outcome).toBe('unavailable')
    await expectRecovery(1)

    const shared = [1, 2, 3].map((n) => runStatement(handle.db, 'select $1::int as n, pg_sleep(0.1)', [n]))
    proxy.freeze()
    const results = await Promise.all(shared.map((s) => settle(s, BOUND_MS + SLACK_MS)))
    expect(results.map((r) => r.outcome)).toEqual(['unavailable', 'unavailable', 'unavailable'])
    await expectRecovery(1)
  })

  it('new work during the stall fails in time: a BEGIN and a new connection within DATABASE_TIMEOUT_MS, a query within the bound, the ping within its own', async () => {
    await openPool(2)
    proxy.freeze()
    const [begin, query, ping] = await Promise.all([
      settle(
        handle.db.transaction((tx) => tx.execute(sql`select 1`)),
        BOUND_MS + SLACK_MS,
      ),
      settle(Promise.resolve(handle.db.execute(sql`select 1`)), BOUND_MS + SLACK_MS),
      settle(handle.ping(TIMEOUT_MS), TIMEOUT_MS + SLACK_MS),
    ])
    expect([begin.outcome, query.outcome, ping.outcome]).toEqual(['unavailable', 'unavailable', 'unavailable'])
    // The BEGIN went out on a stalled connection: the transaction gives up waiting for it like for a free connection.
    expect(begin.ms).toBeLessThan(TIMEOUT_MS + SLACK_MS)

    // A client with no connection yet: connecting meets the stall (TCP accepted, no answer to the startup message).
    const viaProxy = url.replace(`:${new URL(url).port}/`, `:${proxy.port}/`)
    const fresh = createPostgresDatabase({ url: viaProxy, poolMax: 1, timeoutMs: TIMEOUT_MS, statementTimeoutMs: STATEMENT_TIMEOUT_MS })
    const connecting = await settle(Promise.resolve(fresh.db.execute(sql`select 1`)), TIMEOUT_MS + SLACK_MS)
    expect(connecting.outcome).toBe('unavailable')
    // Its end() waits for the connection it was making (up to end's own 5 s): meanwhile, the pool recovers.
    const closing = fresh.close()
    await expectRecovery(2)
    await closing
  })
})

describe('the service on Bun and Node, under load, while PostgreSQL stalls', () => {
  const DATABASE_TIMEOUT_MS = 1000
  const STATEMENT_TIMEOUT_MS = 2000
  /** The documented bound on a request's wait for the database; a request's own work and the slack come on top. */
  const BOUND_MS = DATABASE_TIMEOUT_MS + STATEMENT_TIMEOUT_MS
  const WORKERS = 16
  const ADMIN = { email: 'admin@stall.test', password: 'stall admin password' }

  interface Sample {
    kind: 'checkout' | 'orders'
    start: number
    /** 0 while in flight. */
    end: number
    status: number
    code?: string
    retryAfter?: string | null
  }

  /** Clients in a closed loop, half checkouts (transactions) and half order lists (reads no cache holds). */
  function startTraffic(base: string, customers: string[], products: string[]) {
    const samples: Sample[] = []
    const acknowledged = new Set<string>()
    let running = true
    const loops = Array.from({ length: WORKERS }, async (_, w) => {
      const token = customers[w % customers.length]!
      for (let n = 0; running; n++) {
        const s: Sample = { kind: n % 2 === 0 ? 'checkout' : 'orders', start: Date.now(), end: 0, status: 0 }
        samples.push(s)
        try {
          const headers: Record<string, string> = { authorization: `Bearer ${token}` }
          const res =
            s.kind === 'checkout'
              ? await fetch(`${base}/v1/orders`, {
                  method: 'POST',
                  headers: { ...headers, 'content-type': 'application/json', 'idempotency-key': `w${w}-${n}-${Date.now()}` },
                  body: JSON.stringify({ items: [{ productId: products[(w + n) % products.length], quantity: 1 }] }),
                  signal: AbortSignal.timeout(60_000),
                })
              : await fetch(`${base}/v1/orders?limit=20`, { headers, signal: AbortSignal.timeout(60_000) })
          s.status = res.status
          s.retryAfter = res.headers.get('retry-after')
          const body = (await res.json()) as { id?: string; code?: string }
          if (res.status >= 400) s.code = body.code
          if (res.status === 201 && body.id) acknowledged.add(body.id)
        } catch (err) {
          s.code = (err as { name?: string }).name ?? 'error'
        }
        s.end = Date.now()
      }
    })
    return {
      samples,
      acknowledged,
      async stop() {
        running = false
        await Promise.all(loops)
      },
    }
  }

  const took = (s: Sample) => s.end - s.start
  const tally = (xs: Sample[]) => {
    const out: Record<string, number> = {}
    for (const s of xs) {
      const key = `${s.kind} ${s.status}${s.code ? ` ${s.code}` : ''}`
      out[key] = (out[key] ?? 0) + 1
    }
    return out
  }

  for (const runtime of ['bun', 'node'] as const) {
    it(`${runtime}: requests in flight and new ones answer 503 within DATABASE_TIMEOUT_MS + STATEMENT_TIMEOUT_MS, and it serves again without a restart`, async () => {
      const url = await migratedDatabase(`stall_${runtime}`)
      const pgPort = new URL(url).port
      const proxy = await startTcpProxy(Number(pgPort))
      const server: AppServer = await startAppServer(runtime, {
        NODE_ENV: 'production',
        LOG_LEVEL: 'warn',
        PAYMENT_PROVIDER: 'simulated',
        MAILER: 'recording',
        JWT_SECRET: 'stall-secret-0123456789abcdef0123456789',
        DATABASE_URL: url.replace(`:${pgPort}/`, `:${proxy.port}/`),
        DATABASE_POOL_MAX: '4',
        DATABASE_TIMEOUT_MS: String(DATABASE_TIMEOUT_MS),
        STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS),
        RATE_LIMIT_AUTH: '1000000/60',
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
      })
      let traffic: ReturnType<typeof startTraffic> | undefined
      try {
        const admin = await loginAdmin(server.url, ADMIN)
        const products: string[] = []
        for (let i = 0; i < 4; i++) {
          const res = await client(server.url).post(
            '/v1/products',
            { sku: `STALL-${i}`, name: `Stall ${i}`, priceCents: 100 + i, stock: 1_000_000, category: 'stall' },
            { token: admin },
          )
          expect(res.status).toBe(201)
          products.push(((await res.json()) as { id: string }).id)
        }
        const customers = await Promise.all([0, 1, 2, 3].map(async () => (await signupCustomer(client(server.url))).accessToken))

        traffic = startTraffic(server.url, customers, products)
        const { samples } = traffic
        // Warm: the pool's connections carry checkouts and reads, and more wait for them.
        await vi.waitFor(() => expect(samples.filter((s) => s.status === 201).length).toBeGreaterThan(20), { timeout: 30_000 })

        proxy.freeze()
        const frozenAt = Date.now()
        const inFlight = samples.filter((s) => s.end === 0)
        const [ready, probe] = await Promise.all([
          settle(
            fetch(`${server.url}/readyz`).then((r) => (r.status === 503 ? r : Promise.reject(new Error(`readyz ${r.status}`)))),
            5000,
          ),
          fetch(`${server.url}/v1/orders`, { headers: { authorization: `Bearer ${customers[0]}` } }),
        ])
        // A refusal is problem details, with no driver message in it.
        await expectProblem(probe, 503, 'service_unavailable')
        expect(probe.headers.get('retry-after')).toBe('1')
        // Once every request in flight at the stall has its answer, and each client has had two more: lift it.
        // A request that hangs keeps this waiting until it gives up.
        await vi.waitFor(
          () => {
            expect(inFlight.filter((s) => s.end === 0).map((s) => `${s.kind} waiting for ${Date.now() - s.start} ms`)).toEqual([])
            expect(samples.filter((s) => s.start >= frozenAt && s.end > 0).length).toBeGreaterThanOrEqual(2 * WORKERS)
          },
          { timeout: BOUND_MS + SLACK_MS + 10_000, interval: 100 },
        )
        proxy.thaw()
        const thawedAt = Date.now()

        // Recovery without a restart: checkouts and reads succeed again.
        await vi.waitFor(
          () => {
            const after = samples.filter((s) => s.start > thawedAt && s.end > 0)
            expect(after.filter((s) => s.kind === 'checkout' && s.status === 201).length).toBeGreaterThan(WORKERS)
            expect(after.filter((s) => s.kind === 'orders' && s.status === 200).length).toBeGreaterThan(WORKERS)
          },
          { timeout: 20_000, interval: 100 },
        )
        await traffic.stop()
        const recoveredAt = Date.now()

        const during = samples.filter((s) => s.end > frozenAt && s.start < thawedAt && s.end <= thawedAt)
        const refused = during.filter((s) => s.status === 503)
        // In flight when the stall began: queries on pooled connections, transactions, and work waiting for a connection.
        expect(inFlight.length).toBeGreaterThanOrEqual(WORKERS / 2)
        expect(tally(inFlight.filter((s) => s.status !== 503 && (s.status < 200 || s.status >= 300)))).toEqual({})
        expect(inFlight.filter((s) => s.kind === 'checkout' && s.status === 503).length).toBeGreaterThan(0)
        expect(inFlight.filter((s) => s.kind === 'orders' && s.status === 503).length).toBeGreaterThan(0)
        // Whatever was answered while it stalled: 503 service_unavailable with Retry-After (or a 2xx finished just before).
        expect(tally(during.filter((s) => s.status !== 503 && (s.status < 200 || s.status >= 300)))).toEqual({})
        expect(refused.filter((s) => s.code !== 'service_unavailable' || s.retryAfter !== '1')).toEqual([])
        expect(tally(during.filter((s) => s.start >= frozenAt && s.status !== 503))).toEqual({})
        // Never a hang: no request of the run took longer than the bound (plus slack), before, during or after.
        expect(samples.filter((s) => took(s) > BOUND_MS + SLACK_MS).map((s) => `${s.kind} ${s.status} ${took(s)} ms`)).toEqual([])
        expect(samples.filter((s) => s.status === 0)).toEqual([])
        expect(ready.outcome).toBe('ok')
        expect(ready.ms).toBeLessThan(1500 + SLACK_MS)

        // The same process serves again, and says so.
        expect((await fetch(`${server.url}/readyz`)).status).toBe(200)
        const direct = postgres(url, { max: 1, onnotice: () => {} })
        try {
          const ids = [...traffic.acknowledged]
          const [row] = await direct<{ n: number }[]>`select count(*)::int as n from orders where id = any(${ids}::uuid[])`
          expect(row!.n).toBe(ids.length)
        } finally {
          await direct.end({ timeout: 1 })
        }
        console.info(
          `[${runtime}] stall ${thawedAt - frozenAt} ms: ${refused.length} × 503 (slowest ${Math.max(0, ...refused.map(took))} ms), ` +
            `recovered ${recoveredAt - thawedAt} ms after; ${samples.length} requests`,
        )
      } catch (err) {
        console.error(`[${runtime}] server output:\n${server.output()}`)
        throw err
      } finally {
        proxy.thaw()
        await traffic?.stop()
        await server.stop()
        await proxy.close()
      }
    }, 180_000)
  }
})
