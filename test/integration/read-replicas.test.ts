import { sql } from 'drizzle-orm'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../../src/db/database.ts'
import { rowsOf } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { createReadRouter, lsnBytes, type ReadRouter } from '../../src/db/replicas.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { createMetrics, type Metrics } from '../../src/observability/metrics.ts'
import { type PostgresServer, startPostgres, stopAll } from '../support/postgres.ts'

/*
 * The read router against a real streaming replica: a PostgreSQL primary and
 * a hot standby made from it with `pg_basebackup -R`, on loopback ports. Where
 * a read ran is asked of the server that ran it (`pg_is_in_recovery()`).
 */

let primary: PostgresServer
let standby: PostgresServer
let admin: postgres.Sql
let onStandby: postgres.Sql
const routers: ReadRouter[] = []

beforeAll(async () => {
  primary = await startPostgres({ synchronousCommit: true })
  admin = postgres(primary.url(), { max: 1, onnotice: () => {} })
  await admin`create table notes (id int primary key, body text not null)`
  standby = await startPostgres({ standbyOf: primary })
  onStandby = postgres(standby.url(), { max: 1, onnotice: () => {} })
}, 120_000)

afterAll(async () => {
  await Promise.all(routers.map((r) => r.close()))
  await stopAll([onStandby, admin], [standby, primary])
})

function router(opts: { maxLagMs?: number; metrics?: Metrics; replicaUrls?: string[] } = {}) {
  const handle = (url: string) => createPostgresDatabase({ url, poolMax: 2, timeoutMs: 1000, statementTimeoutMs: 5000 })
  const r = createReadRouter({
    primary: handle(primary.url()),
    replicas: (opts.replicaUrls ?? [standby.url()]).map((url, i) => ({ name: `replica${i + 1}`, handle: handle(url) })),
    maxLagMs: opts.maxLagMs ?? 1000,
    pollMs: 50,
    timeoutMs: 1000,
    metrics: opts.metrics,
    logger: createLogger({ level: 'silent' }),
    background: false,
  })
  routers.push(r)
  return r
}

/** Where a read ran, and whether it saw note `id`. */
const probe = (id: number) => async (db: Database) => {
  const [row] = rowsOf<{ standby: boolean; seen: boolean }>(
    await db.execute(sql`select pg_is_in_recovery() as standby, exists (select 1 from notes where id = ${id}) as seen`),
  )
  return row!
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Polls until the replica holds every commit made before `t`. */
async function caughtUp(r: ReadRouter, t: number) {
  for (let i = 0; i < 100; i++) {
    await r.poll()
    if (r.status()[0]!.caughtUpAt >= t) return
    await sleep(20)
  }
  throw new Error('the replica did not catch up')
}

let nextId = 1

describe('the read router', () => {
  it('reads from a caught-up replica, and measures its lag', async () => {
    const metrics = createMetrics()
    const r = router({ metrics })
    // Before its first poll nothing is known of the replica: the primary answers.
    expect((await r.read(probe(0))).standby).toBe(false)
    await caughtUp(r, Date.now())
    const status = r.status()[0]!
    expect(status.up).toBe(true)
    expect(status.lagMs).toBeLessThan(1000)
    expect(status.lagBytes).toBeGreaterThanOrEqual(0)
    expect((await r.read(probe(0))).standby).toBe(true)
    const text = metrics.render()
    expect(text).toContain('edgeshop_replica_up{replica="replica1"} 1')
    expect(text).toMatch(/edgeshop_replica_lag_seconds\{replica="replica1"\} [\d.e-]+/)
    expect(text).toContain('edgeshop_db_reads_total{target="replica1",reason="healthy"} 1')
    expect(text).toContain('edgeshop_db_reads_total{target="primary",reason="no_healthy_replica"} 1')
  })

  it('sends a read that must see a write to the primary until the replica has replayed it', async () => {
    const r = router()
    await caughtUp(r, Date.now())
    const id = nextId++
    await admin`insert into notes values (${id}, 'written')`
    const writtenAt = Date.now()
    // The replica was healthy at its last poll, but that poll was before the write.
    const first = await r.read(probe(id), writtenAt)
    expect(first).toEqual({ standby: false, seen: true })
    await caughtUp(r, writtenAt + 100)
    expect(await r.read(probe(id), writtenAt)).toEqual({ standby: true, seen: true })
  })

  it('skips a replica whose replay is paused once it is past the bound, reports its lag, and uses it again after', async () => {
    const metrics = createMetrics()
    const r = router({ maxLagMs: 300, metrics })
    await caughtUp(r, Date.now())
    await onStandby`select pg_wal_replay_pause()`
    try {
      const id = nextId++
      await admin`insert into notes values (${id}, 'while paused')`
      const before = Date.now()
      await sleep(500)
      await r.poll()
      const status = r.status()[0]!
      expect(status.up).toBe(true)
      expect(status.caughtUpAt).toBeLessThan(before)
      expect(status.lagMs).toBeGreaterThan(300)
      expect(status.lagBytes).toBeGreaterThan(0)
      // Lagging past the bound: the primary answers, and sees the row the replica has not replayed.
      expect(await r.read(probe(id))).toEqual({ standby: false, seen: true })
      expect(metrics.render()).toContain('edgeshop_db_reads_total{target="primary",reason="no_healthy_replica"} 1')
      const lag = Number(/edgeshop_replica_lag_seconds\{replica="replica1"\} ([\d.e-]+)/.exec(metrics.render())?.[1])
      expect(lag).toBeGreaterThan(0.3)
    } finally {
      await onStandby`select pg_wal_replay_resume()`
    }
    await caughtUp(r, Date.now())
    expect((await r.read(probe(0))).standby).toBe(true)
  })

  it('falls back to the primary, without an error, when the replica stops, and comes back to it', async () => {
    const metrics = createMetrics()
    const r = router({ metrics })
    await caughtUp(r, Date.now())
    await standby.pause()
    try {
      // Not polled since: the replica is taken for up, the read fails on it and runs on the primary.
      expect((await r.read(probe(0))).standby).toBe(false)
      expect(metrics.render()).toContain('edgeshop_db_reads_total{target="primary",reason="replica_failed"} 1')
      expect(metrics.render()).toContain('edgeshop_replica_failures_total{replica="replica1"} 1')
      await r.poll()
      expect(r.status()[0]!.up).toBe(false)
      expect(metrics.render()).toContain('edgeshop_replica_up{replica="replica1"} 0')
      expect((await r.read(probe(0))).standby).toBe(false)
    } finally {
      await standby.resume()
    }
    await caughtUp(r, Date.now())
    expect((await r.read(probe(0))).standby).toBe(true)
  })

  it('takes turns among healthy replicas, and never reads from a server that is not a standby', async () => {
    const metrics = createMetrics()
    // Two names for the one standby, and a "replica" that is in fact the primary (a wrong URL).
    const r = router({ metrics, replicaUrls: [standby.url(), standby.url(), primary.url()] })
    await caughtUp(r, Date.now())
    expect(r.status().map((s) => s.up)).toEqual([true, true, false])
    for (let i = 0; i < 6; i++) expect((await r.read(probe(0))).standby).toBe(true)
    const text = metrics.render()
    expect(text).toContain('edgeshop_db_reads_total{target="replica1",reason="healthy"} 3')
    expect(text).toContain('edgeshop_db_reads_total{target="replica2",reason="healthy"} 3')
    expect(text).toContain('edgeshop_replica_up{replica="replica3"} 0')
  })

  it('reads LSNs as byte positions', () => {
    expect(lsnBytes('0/0')).toBe(0)
    expect(lsnBytes('1/0')).toBe(2 ** 32)
    expect(lsnBytes('16/B374D848') - lsnBytes('16/B374D800')).toBe(0x48)
  })
})
