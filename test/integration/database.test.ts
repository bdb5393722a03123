import { spawnSync } from 'node:child_process'
import { sql } from 'drizzle-orm'
import postgres from 'postgres'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { DatabaseUnavailableError, isDatabaseUnavailable } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { migrate } from '../../src/runtime/migrate.ts'
import { ROOT } from '../support/app-server.ts'
import { freshDatabase } from '../support/databases.ts'
import { startTcpProxy } from '../support/tcp-proxy.ts'

/*
 * The Postgres layer against a real PostgreSQL: migrations, the pool's
 * bounds, and which failures count as "the database is unavailable".
 */

describe('migrations', () => {
  it('apply on PostgreSQL, are recorded, and a second run changes nothing', async () => {
    const url = await freshDatabase()
    const h = createPostgresDatabase({ url, poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 30_000 })
    await migrate(h)
    const applied = await h.db.execute(sql`select count(*)::int as n from drizzle.__drizzle_migrations`)
    await migrate(h)
    const again = await h.db.execute(sql`select count(*)::int as n from drizzle.__drizzle_migrations`)
    expect((again as unknown as { n: number }[])[0]!.n).toBe((applied as unknown as { n: number }[])[0]!.n)
    const tables = await h.db.execute(sql`select table_name from information_schema.tables where table_schema = 'public'`)
    expect((tables as unknown as { table_name: string }[]).map((r) => r.table_name)).toContain('users')
    await h.close()
  })

  it('run safely from several processes at once (advisory lock)', async () => {
    const url = await freshDatabase()
    const handles = [0, 1, 2].map(() => createPostgresDatabase({ url, poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 30_000 }))
    await Promise.all(handles.map((h) => migrate(h)))
    const rows = (await handles[0]!.db.execute(
      sql`select hash, count(*)::int as n from drizzle.__drizzle_migrations group by hash`,
    )) as unknown as {
      n: number
    }[]
    expect(rows.every((r) => r.n === 1)).toBe(true)
    await Promise.all(handles.map((h) => h.close()))
  })

  it('`bun run db:migrate` applies them to DATABASE_URL and refuses without one', async () => {
    const url = await freshDatabase()
    const bun = process.env.BUN_BIN ?? 'bun'
    const ok = spawnSync(bun, ['run', 'db:migrate'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: url },
      encoding: 'utf8',
      timeout: 60_000,
    })
    expect(ok.status, ok.stderr).toBe(0)
    expect(ok.stdout).toContain('migrations applied')
    expect(ok.stdout + ok.stderr).not.toContain('edgeshop-test')
    const check = postgres(url, { max: 1 })
    const [row] = await check`select count(*)::int as n from users`
    expect(row!.n).toBe(0)
    await check.end()

    const { DATABASE_URL: _, ...withoutUrl } = process.env
    const missing = spawnSync(bun, ['run', 'db:migrate'], { cwd: ROOT, env: withoutUrl, encoding: 'utf8', timeout: 60_000 })
    expect(missing.status).toBe(2)
    expect(missing.stderr).toContain('DATABASE_URL')
  })
})

describe('pool bounds', () => {
  let url: string
  beforeAll(async () => {
    url = await freshDatabase()
  })

  it('a transaction that cannot get a connection in time fails as unavailable, and never runs later', async () => {
    const h = createPostgresDatabase({ url, poolMax: 1, timeoutMs: 300, statementTimeoutMs: 5000 })
    let ranLate = false
    const holder = h.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_sleep(1)`)
    })
    // The holder has the pool's one connection.
    await expect.poll(() => h.stats!().transactionsInFlight).toBe(1)
    const started = Date.now()
    const waiting = h.db.transaction(async () => {
      ranLate = true
    })
    await expect(waiting).rejects.toBeInstanceOf(DatabaseUnavailableError)
    expect(Date.now() - started).toBeLessThan(800)
    expect(h.stats!().timeouts).toBe(1)
    await holder
    await new Promise((r) => setTimeout(r, 100))
    expect(ranLate).toBe(false)
    await h.close()
  })

  it('a statement past STATEMENT_TIMEOUT_MS is cancelled by the server and counts as unavailable', async () => {
    const h = createPostgresDatabase({ url, poolMax: 2, timeoutMs: 1000, statementTimeoutMs: 200 })
    const err = await h.db.execute(sql`select pg_sleep(2)`).catch((e: unknown) => e)
    expect(isDatabaseUnavailable(err)).toBe(true)
    await h.close()
  })

  it('counts queries and transactions in flight', async () => {
    const h = createPostgresDatabase({ url, poolMax: 3, timeoutMs: 1000, statementTimeoutMs: 5000 })
    const q = Promise.resolve(h.db.execute(sql`select pg_sleep(0.3)`))
    const t = h.db.transaction((tx) => tx.execute(sql`select pg_sleep(0.3)`))
    await expect.poll(() => h.stats!()).toMatchObject({ max: 3, queriesInFlight: 1, transactionsInFlight: 1 })
    await Promise.all([q, t])
    expect(h.stats!()).toMatchObject({ queriesInFlight: 0, transactionsInFlight: 0 })
    await h.close()
  })

  it('a query error that is the caller’s fault is not "unavailable"', async () => {
    const h = createPostgresDatabase({ url, poolMax: 1, timeoutMs: 1000, statementTimeoutMs: 5000 })
    const err = await h.db.execute(sql`select * from no_such_table`).catch((e: unknown) => e)
    expect(isDatabaseUnavailable(err)).toBe(false)
    await h.close()
  })
})

describe('postgres.js under connection loss (patched: patches/postgres@3.4.9.patch)', () => {
  /** How a query ended, within a bound: a hang is a failure too. */
  const outcome = (work: Promise<unknown>) =>
    Promise.race([
      work.then(
        () => 'ok',
        (e: { code?: string }) => e.code ?? 'error',
      ),
      new Promise((r) => setTimeout(() => r('hung'), 5000)),
    ])
  const lost = ['CONNECTION_CLOSED', 'ECONNRESET']

  it('queries on a connection whose backend died reject, neither crashing the process nor hanging (porsager/postgres#1208)', async () => {
    const url = await freshDatabase()
    const sql = postgres(url, { max: 2, onnotice: () => {} })
    const killer = postgres(url, { max: 1 })
    const reserved = await sql.reserve()
    const [{ pid }] = (await reserved`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
    await killer`select pg_terminate_backend(${pid})`
    expect(lost).toContain(await outcome(reserved`select 1`))
    expect(lost).toContain(await outcome(reserved`select 1`))
    expect(await sql`select 2 as n`).toEqual([{ n: 2 }])
    reserved.release()
    await Promise.all([sql.end({ timeout: 1 }), killer.end({ timeout: 1 })])
  })

  it('a transaction whose backend dies mid-way settles (its ROLLBACK does not hang) and its connection comes back to the pool', async () => {
    const url = await freshDatabase()
    const sql = postgres(url, { max: 1, onnotice: () => {} })
    const killer = postgres(url, { max: 1 })
    const tx = sql.begin(async (s) => {
      const [{ pid }] = (await s`select pg_backend_pid() as pid`) as unknown as [{ pid: number }]
      await killer`select pg_terminate_backend(${pid})`
      await s`select 1`
    })
    expect(lost).toContain(await outcome(tx))
    // With a pool of one, this only answers if the transaction's connection was given back (a leaked one hangs every
    // later query). A query sent in the instant between the socket's error and its close is refused: allow a retry.
    const attempts: unknown[] = []
    for (let i = 0; i < 3 && attempts.at(-1) !== 'ok'; i++) attempts.push(await outcome(sql`select 2 as n`))
    expect(attempts).not.toContain('hung')
    expect(attempts.at(-1)).toBe('ok')
    await Promise.all([sql.end({ timeout: 1 }), killer.end({ timeout: 1 })])
  })
})

describe('postgres.js and a server that accepts but never answers (patched: patches/postgres@3.4.9.patch)', () => {
  /** A client of a fresh database through a proxy that can stall (test/support/tcp-proxy.ts). */
  async function stallable(options: postgres.Options<Record<string, postgres.PostgresType>>) {
    const url = await freshDatabase()
    const port = new URL(url).port
    const proxy = await startTcpProxy(Number(port))
    const sql = postgres(url.replace(`:${port}/`, `:${proxy.port}/`), { onnotice: () => {}, ...options })
    return {
      proxy,
      sql,
      async close() {
        proxy.thaw()
        await sql.end({ timeout: 1 })
        await proxy.close()
      },
    }
  }
  /** How a query ended, and when; `hung` after `ms`. */
  const within = (work: Promise<unknown>, ms: number) =>
    Promise.race([
      work.then(
        () => 'ok',
        (e: { code?: string }) => e.code ?? 'error',
      ),
      new Promise((r) => setTimeout(() => r('hung'), ms)),
    ])

  it('stall_timeout: a connection that hears nothing while it waits for an answer is destroyed, and the pool connects anew', async () => {
    const { proxy, sql, close } = await stallable({ max: 1, stall_timeout: 1 })
    try {
      // Silence that is not a stall: an idle connection, and a statement that takes a while but less than the bound.
      await sql`select 1`
      await new Promise((r) => setTimeout(r, 1200))
      expect(await within(sql`select pg_sleep(0.5)`, 5000)).toBe('ok')

      proxy.freeze()
      const started = Date.now()
      const [first, second] = await Promise.all([within(sql`select 1`, 5000), within(sql`select 2`, 5000)])
      // Every query on it, the pipelined one too.
      expect([first, second]).toEqual(['CONNECTION_STALLED', 'CONNECTION_STALLED'])
      expect(Date.now() - started).toBeLessThan(3000)
      proxy.thaw()
      expect(await within(sql`select 3`, 5000)).toBe('ok')
      expect(proxy.accepted).toBe(2)
    } finally {
      await close()
    }
  })

  it('a transaction whose connection was destroyed sends nothing more on it, once the pool has connected it anew', async () => {
    const { proxy, sql, close } = await stallable({ max: 1, stall_timeout: 0.5 })
    try {
      await sql`create table marks (n int)`
      const late: unknown[] = []
      let body: Promise<void> | undefined
      const tx = sql.begin((t) => {
        body = (async () => {
          await t`insert into marks values (1)`
          proxy.freeze()
          late.push(await within(t`insert into marks values (2)`, 5000))
          proxy.thaw()
          // The pool's one connection serves others again, in a new session.
          late.push(await within(sql`select 1`, 5000))
          // A statement of the lost transaction, made after all that, must not run there, outside any transaction.
          late.push(await within(t`insert into marks values (3)`, 5000))
        })()
        return body
      })
      // The transaction fails when its connection goes; its callback runs on, and is done with the pool's help.
      expect(await within(tx, 10_000)).toBe('CONNECTION_CLOSED')
      await body
      expect(late).toEqual(['CONNECTION_STALLED', 'ok', 'CONNECTION_CLOSED'])
      expect(await sql`select n from marks`).toEqual([])
    } finally {
      await close()
    }
  })

  it('a query cancelled while its connection is being made does not cost the pool that connection', async () => {
    const { proxy, sql, close } = await stallable({ max: 1, connect_timeout: 5 })
    try {
      proxy.freeze()
      const query = sql`select 1`
      const cancelled = within(query, 5000)
      await vi.waitFor(() => expect(proxy.accepted).toBe(1))
      await query.cancel()
      expect(await cancelled).toBe('57014')
      // The connection finishes connecting after its query was cancelled: it must still go to the pool.
      proxy.thaw()
      expect(await within(sql`select 2`, 5000)).toBe('ok')
    } finally {
      await close()
    }
  })
})

describe('postgres.js queries as promises (patched: patches/postgres@3.4.9.patch)', () => {
  it('a query is a Promise whose then() makes plain promises through a data-property @@species, not a getter', async () => {
    const url = await freshDatabase()
    const sql = postgres(url, { max: 1, onnotice: () => {} })
    const query = sql`select 41 + 1 as answer`
    const Query = query.constructor
    expect(query).toBeInstanceOf(Promise)
    // The getter upstream ships made Node promote every settled query (docs/bench/HISTORY.md).
    const species = Object.getOwnPropertyDescriptor(Query, Symbol.species)
    expect(species?.get).toBeUndefined()
    expect(species?.value).toBe(Promise)
    const derived = query.then((rows) => rows[0]?.answer)
    expect(derived.constructor).toBe(Promise)
    expect(await derived).toBe(42)
    await expect(sql`select 1/0`.catch((e: { code?: string }) => e.code)).resolves.toBe('22012')
    await sql.end({ timeout: 1 })
  })
})
