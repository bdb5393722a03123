import { sql as q } from 'drizzle-orm'
import type { Logger } from '../observability/logger.ts'
import type { Metrics } from '../observability/metrics.ts'
import { throttledLog } from '../observability/throttle.ts'
import { type Database, type DatabaseHandle, isDatabaseUnavailable, isRetryableConflict, rowsOf, withDeadline } from './database.ts'

/*
 * Reads routed to PostgreSQL streaming replicas. In the background, every
 * `pollMs`, the primary's WAL position is sampled with the time it was taken
 * (`pg_current_wal_insert_lsn()`: past every commit acknowledged, asynchronous
 * ones included), and each replica is asked how far it has
 * replayed (`pg_last_wal_replay_lsn()`). A replica that has replayed past the
 * sample taken at time t holds every commit acknowledged before t: that t is
 * its `caughtUpAt`, and `now - caughtUpAt` bounds its lag from above. An idle
 * primary does not make a replica look behind (unlike comparing replay
 * timestamps). A read goes to a replica that answered its last poll, is
 * within `maxLagMs`, and — for a read that must see a write made at time w —
 * has `caughtUpAt` past w; otherwise, and whenever the replica fails, to the
 * primary. The client never sees a replica's failure.
 */

/**
 * How far apart the clocks of two instances may be: a write time made on one
 * instance is compared with replica positions measured on another.
 */
export const CLOCK_SKEW_MS = 100

/** A replica's state as of its last poll. */
export interface ReplicaStatus {
  name: string
  /** Answered its last poll as a standby. */
  up: boolean
  /** Every commit acknowledged by the primary before this time (ms, this clock) has been replayed; -Infinity when unknown. */
  caughtUpAt: number
  /** Upper bound of its lag at its last poll, in ms; undefined until measured. */
  lagMs: number | undefined
  /** WAL bytes between the primary's newest sample and the replica's replay position at its last poll. */
  lagBytes: number | undefined
}

/** Why a read went where it went. */
export type ReadReason = 'healthy' | 'read_your_writes' | 'no_healthy_replica' | 'replica_failed'

export interface ReadRouter {
  /**
   * Runs `work` on a replica that is up, within the lag bound and has
   * replayed every commit made before `after` (ms since the epoch), or else
   * on the primary. A replica that fails (down, conflict with recovery) is
   * taken out until its next poll and the work runs again on the primary.
   *
   * @example
   * ```ts
   * const rows = await router.read((db) => db.select().from(products).limit(20), writtenAt)
   * ```
   */
  read<T>(work: (db: Database) => Promise<T>, after?: number): Promise<T>
  status(): ReplicaStatus[]
  /** Measures every replica now (done every `pollMs` in the background). */
  poll(): Promise<void>
  /** Stops polling and closes the replicas' pools (not the primary's). */
  close(): Promise<void>
}

export interface ReadRouterOptions {
  primary: DatabaseHandle
  replicas: { name: string; handle: DatabaseHandle }[]
  maxLagMs: number
  pollMs: number
  /** Bound of one poll query. */
  timeoutMs: number
  metrics?: Metrics | undefined
  logger: Logger
  now?: () => number
  /** Off: polls only when `poll()` is called (tests). */
  background?: boolean
}

/** An LSN such as `16/B374D848` as a number of bytes (exact up to 2^53, 8 PiB of WAL). */
export function lsnBytes(lsn: string): number {
  const [hi, lo] = lsn.split('/')
  return Number.parseInt(hi ?? '', 16) * 2 ** 32 + Number.parseInt(lo ?? '', 16)
}

/**
 * Where the last WAL record ends, from the insert position. Right after a page
 * boundary the insert position points past the new page's header (24 or 40
 * bytes), while a standby's replay position is the end of the last record, the
 * boundary itself: an idle standby would never seem to reach the insert position.
 */
function lastRecordEnd(insert: number, blockSize: number): number {
  const inPage = insert % blockSize
  return inPage <= 40 ? insert - inPage : insert
}

interface Replica extends ReplicaStatus {
  handle: DatabaseHandle
}

/**
 * @example
 * ```ts
 * const router = createReadRouter({ primary, replicas: [{ name: 'replica1', handle }], maxLagMs: 2000, pollMs: 250, timeoutMs: 1000, logger })
 * ```
 */
export function createReadRouter(opts: ReadRouterOptions): ReadRouter {
  const now = opts.now ?? Date.now
  const replicas: Replica[] = opts.replicas.map((r) => ({
    name: r.name,
    handle: r.handle,
    up: false,
    caughtUpAt: Number.NEGATIVE_INFINITY,
    lagMs: undefined,
    lagBytes: undefined,
  }))
  /** The primary's positions, oldest first, kept while a replica could still be caught up to them. */
  const samples: { at: number; lsn: number }[] = []
  let next = 0
  const reads = opts.metrics?.counter('edgeshop_db_reads_total', 'Routed reads by where they ran (a replica or the primary) and why', [
    'target',
    'reason',
  ])
  const failures = opts.metrics?.counter('edgeshop_replica_failures_total', 'Reads a replica failed, then run on the primary', ['replica'])
  opts.metrics?.gauge('edgeshop_replica_up', 'Whether a replica answered its last poll as a standby', () =>
    replicas.map((r) => ({ labels: { replica: r.name }, value: r.up ? 1 : 0 })),
  )
  opts.metrics?.gauge('edgeshop_replica_lag_seconds', 'Upper bound of a replica’s replay lag behind the primary at its last poll', () =>
    replicas.filter((r) => r.lagMs !== undefined).map((r) => ({ labels: { replica: r.name }, value: r.lagMs! / 1000 })),
  )
  opts.metrics?.gauge('edgeshop_replica_lag_bytes', 'WAL bytes a replica had still to replay at its last poll', () =>
    replicas.filter((r) => r.lagBytes !== undefined).map((r) => ({ labels: { replica: r.name }, value: r.lagBytes! })),
  )
  const warn = throttledLog(opts.logger, 'warn', 'read replica skipped', 10_000)

  const one = async <T>(db: Database, text: ReturnType<typeof q>) =>
    rowsOf<T>(await withDeadline(db.execute(text), opts.timeoutMs, 'replica poll'))[0]

  async function measure(r: Replica): Promise<void> {
    try {
      const row = await one<{ standby: boolean; lsn: string | null }>(
        r.handle.db,
        q`select pg_is_in_recovery() as standby, pg_last_wal_replay_lsn()::text as lsn`,
      )
      const checkedAt = now()
      if (!row?.standby || row.lsn == null) {
        // Promoted, or pointed at a primary by mistake: its writes are not the primary's.
        if (r.up) warn({ replica: r.name, reason: 'not a standby' })
        r.up = false
        return
      }
      const replayed = lsnBytes(row.lsn)
      for (const s of samples) if (s.lsn <= replayed && s.at > r.caughtUpAt) r.caughtUpAt = s.at
      const newest = samples.at(-1)
      r.up = true
      r.lagMs = Number.isFinite(r.caughtUpAt) ? Math.max(0, checkedAt - r.caughtUpAt) : undefined
      r.lagBytes = newest ? Math.max(0, newest.lsn - replayed) : undefined
      if (r.lagMs === undefined || r.lagMs > opts.maxLagMs) warn({ replica: r.name, reason: 'lagging', lagMs: r.lagMs ?? null })
    } catch (err) {
      if (r.up) warn({ replica: r.name, reason: 'down', error: err instanceof Error ? err.message : String(err) })
      r.up = false
    }
  }

  let polling: Promise<void> | undefined
  const poll = () =>
    (polling ??= (async () => {
      try {
        const at = now()
        const row = await one<{ lsn: string; block: number }>(
          opts.primary.db,
          q`select pg_current_wal_insert_lsn()::text as lsn, current_setting('wal_block_size')::int as block`,
        )
        if (row) samples.push({ at, lsn: lastRecordEnd(lsnBytes(row.lsn), Number(row.block)) })
      } catch {
        // The primary is not answering: nothing to compare with; replicas keep the position they had reached.
      }
      const keepAfter = now() - 2 * opts.maxLagMs
      while (samples.length > 2 && (samples[0]!.at < keepAfter || samples.length > 1024)) samples.shift()
      await Promise.all(replicas.map(measure))
    })().finally(() => {
      polling = undefined
    }))

  let timer: ReturnType<typeof setTimeout> | undefined
  let closed = false
  const loop = () => {
    if (closed) return
    poll().finally(() => {
      if (closed) return
      timer = setTimeout(loop, opts.pollMs)
      ;(timer as { unref?: () => void }).unref?.()
    })
  }
  if (opts.background !== false) loop()

  const onPrimary = <T>(work: (db: Database) => Promise<T>, reason: ReadReason) => {
    reads?.inc({ target: 'primary', reason })
    return work(opts.primary.db)
  }

  return {
    async read(work, after) {
      const t = now()
      let healthy = false
      let chosen: Replica | undefined
      for (let i = 0; i < replicas.length; i++) {
        const r = replicas[(next + i) % replicas.length]!
        if (!r.up || t - r.caughtUpAt > opts.maxLagMs) continue
        healthy = true
        if (after !== undefined && r.caughtUpAt < after + CLOCK_SKEW_MS) continue
        chosen = r
        next = (next + i + 1) % replicas.length
        break
      }
      if (!chosen) return onPrimary(work, healthy ? 'read_your_writes' : 'no_healthy_replica')
      try {
        const result = await work(chosen.handle.db)
        reads?.inc({ target: chosen.name, reason: 'healthy' })
        return result
      } catch (err) {
        // A replica that went away since its last poll, or a read cancelled by WAL replay: the primary answers.
        if (!isDatabaseUnavailable(err) && !isRetryableConflict(err)) throw err
        chosen.up = false
        failures?.inc({ replica: chosen.name })
        warn({ replica: chosen.name, reason: 'read failed', error: err instanceof Error ? err.message : String(err) })
        return onPrimary(work, 'replica_failed')
      }
    },
    status: () => replicas.map(({ handle: _, ...s }) => ({ ...s })),
    poll,
    async close() {
      closed = true
      clearTimeout(timer)
      await polling?.catch(() => {})
      await Promise.all(replicas.map((r) => r.handle.close()))
    },
  }
}
