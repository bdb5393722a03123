import { and, eq, lt, sql } from 'drizzle-orm'
import { type Database, rowsOf, type Transaction } from '../../db/database.ts'
import { idempotencyKeys, jobs, scheduleRuns } from '../../db/schema.ts'
import type { Cache } from '../../infra/cache.ts'
import { type JobDispatcher, undispatchedJobs } from '../../infra/jobs/dispatch.ts'
import type { Logger } from '../../observability/logger.ts'
import { purgeRefreshTokens } from '../accounts/index.ts'
import { PRODUCTS, productKey } from '../catalog/index.ts'
import { expireOrders } from '../orders/index.ts'

/*
 * What every cron tick does, whoever ticks: Workers cron triggers, the
 * in-process scheduler of Bun and Node, or a QStash schedule.
 *
 *   * * * * *   expire unpaid orders past their deadline (releasing their
 *               stock); hand QStash the jobs it never got (bounded: see
 *               handOverStuck)
 *   0 3 * * *   purge expired idempotency records and refresh tokens, old
 *               finished jobs and old schedule records
 *
 * A tick runs once per slot (its minute, or its day) however many instances
 * tick: the first to insert the slot's row in `schedule_runs` runs it, under
 * a transaction-scoped advisory lock so two runs never overlap. The minutely
 * expiry then commits in small batches of its own, so that the products'
 * row locks it takes never hold checkouts up for long.
 */

export const MINUTELY = '* * * * *'
export const DAILY = '0 3 * * *'
export const SCHEDULES = [MINUTELY, DAILY] as const

export interface ScheduleEnv {
  db: Database
  cache: Cache
  dispatcher: JobDispatcher
  logger: Logger
  waitUntil(work: Promise<unknown>): void
  /** Jobs not handed over within this are published again (QStash). */
  handoverBoundMs?: number
}

export type ScheduleReport =
  | { ran: false; reason: 'not due' | 'already ran' | 'busy' }
  | { ran: true; schedule: string; slot: string; [k: string]: unknown }

/** The slot a tick at `now` belongs to, or undefined when the schedule is not due (the daily one before 03:00 UTC). */
export function slotOf(cron: string, now: Date): Date | undefined {
  if (cron === MINUTELY) return new Date(Math.floor(now.getTime() / 60_000) * 60_000)
  if (cron === DAILY) {
    const slot = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), 3))
    return now >= slot ? slot : undefined
  }
  throw new Error(`unknown schedule ${cron}`)
}

async function claimSlot(tx: Transaction, cron: string, slot: Date): Promise<'claimed' | 'already ran' | 'busy'> {
  const [lock] = rowsOf<{ locked: boolean }>(
    await tx.execute(sql`select pg_try_advisory_xact_lock(hashtextextended(${`schedule:${cron}`}, 0)) as locked`),
  )
  if (!lock?.locked) return 'busy'
  const claimed = await tx
    .insert(scheduleRuns)
    .values({ schedule: cron, slot })
    .onConflictDoNothing()
    .returning({ slot: scheduleRuns.slot })
  return claimed.length > 0 ? 'claimed' : 'already ran'
}

/** Runs the schedule `cron` for the tick at `now`, if this slot has not run yet anywhere. */
export async function runSchedule(cron: string, now: Date, env: ScheduleEnv): Promise<ScheduleReport> {
  const slot = slotOf(cron, now)
  if (!slot) return { ran: false, reason: 'not due' }
  const claim = await env.db.transaction(async (tx) => {
    const claim = await claimSlot(tx as Transaction, cron, slot)
    if (claim !== 'claimed') return { ran: false as const, reason: claim }
    // The daily purge runs inside the claim (nothing waits on its rows); the minutely work commits in batches of its own.
    return { ran: true as const, report: cron === DAILY ? await daily(tx as Transaction, now) : undefined }
  })
  if (!claim.ran) return claim
  const report = claim.report ?? (await minutely(now, env))
  env.logger.info('schedule ran', { schedule: cron, slot: slot.toISOString(), ...report })
  return { ran: true, schedule: cron, slot: slot.toISOString(), ...report }
}

/** Orders expired per transaction: each batch holds its products' row locks only until it commits. */
const EXPIRY_BATCH = 100

async function minutely(now: Date, env: ScheduleEnv) {
  let expired = 0
  const changed = new Map<string, number>()
  // Each batch commits on its own, outside the slot's claim: releasing stock locks the catalog's hottest rows,
  // and one transaction over every due order held them while checkouts queued behind them for seconds.
  // A batch is atomic (expired together with its stock released); what a failure leaves, the next tick expires.
  for (;;) {
    const batch = await env.db.transaction((tx) => expireOrders(tx as Transaction, { now, limit: EXPIRY_BATCH }))
    expired += batch.expired.length
    for (const p of batch.changed) changed.set(p.id, Math.max(p.version, changed.get(p.id) ?? 0))
    if (batch.expired.length < EXPIRY_BATCH) break
  }
  if (changed.size > 0) {
    env.waitUntil(
      Promise.all([
        ...[...changed].map(([id, version]) => env.cache.invalidateEntity(productKey(id), version)),
        env.cache.invalidateCollection(PRODUCTS),
      ]),
    )
  }
  const handedOver = env.dispatcher.handOver ? await handOverStuck(now, env, env.dispatcher.handOver) : 0
  return { expiredOrders: expired, redispatchedJobs: handedOver }
}

/** Jobs read per batch when handing over what QStash never got. */
const HANDOVER_BATCH = 500
/** A tick stops handing jobs over after this, well before the next minute's tick. */
const HANDOVER_BUDGET_MS = 45_000

/**
 * Hands QStash the jobs it never got, a batch at a time, through the
 * dispatcher's cap on publishes in flight. Ends when none is left, at the
 * first publish that fails or runs past its bound (QStash is not answering:
 * the next tick tries again), or after {@link HANDOVER_BUDGET_MS}.
 */
async function handOverStuck(now: Date, env: ScheduleEnv, handOver: NonNullable<JobDispatcher['handOver']>): Promise<number> {
  const before = new Date(now.getTime() - (env.handoverBoundMs ?? 30_000))
  const until = Date.now() + HANDOVER_BUDGET_MS
  let published = 0
  let after: string | undefined
  for (;;) {
    const stuck = await undispatchedJobs(env.db, before, HANDOVER_BATCH, after)
    if (stuck.length === 0) break
    const report = await handOver(env.db, stuck)
    published += report.published
    if (report.left > 0 || report.failed > 0 || stuck.length < HANDOVER_BATCH || Date.now() > until) break
    after = stuck.at(-1)!.id
  }
  return published
}

async function daily(tx: Transaction, now: Date) {
  const purgedKeys = await tx.delete(idempotencyKeys).where(lt(idempotencyKeys.expiresAt, now)).returning({ key: idempotencyKeys.key })
  const purgedTokens = await purgeRefreshTokens(tx as unknown as Database, now)
  const weekAgo = new Date(now.getTime() - 7 * 24 * 3600 * 1000)
  const monthAgo = new Date(now.getTime() - 30 * 24 * 3600 * 1000)
  const purgedJobs = await tx
    .delete(jobs)
    .where(and(eq(jobs.status, 'succeeded'), lt(jobs.updatedAt, monthAgo)))
    .returning({ id: jobs.id })
  await tx.delete(scheduleRuns).where(lt(scheduleRuns.slot, weekAgo))
  return { purgedIdempotencyKeys: purgedKeys.length, purgedRefreshTokens: purgedTokens, purgedJobs: purgedJobs.length }
}
