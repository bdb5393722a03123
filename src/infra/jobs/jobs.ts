import { type Context, context, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import { and, eq, lte, sql } from 'drizzle-orm'
import type { Database, Transaction } from '../../db/database.ts'
import { jobs } from '../../db/schema.ts'
import { uuidv7 } from '../../lib/uuid.ts'
import type { Logger } from '../../observability/logger.ts'
import { activeTraceparent, contextOf, traceIdOf, tracer } from '../../observability/tracing.ts'
import type { JobObserver, RunResult } from './metrics.ts'

/*
 * Background jobs as a transactional outbox. A job row is inserted in the
 * transaction that causes it; after that commits, the dispatcher hands it
 * over (QStash, or the embedded runner). Delivery is at least once; a run is
 * exactly-once in effect because:
 *
 * - a run is one transaction that first moves the row from `pending` to
 *   `running` with a conditional UPDATE: a second delivery of a finished job
 *   finds nothing to claim (a no-op), and a concurrent one waits for the row
 *   lock, then finds the job finished;
 * - the handler's database effects commit with the job's `succeeded`;
 * - effects outside the database carry an idempotency key derived from the job.
 *
 * A failed run rolls back and is then recorded: attempts + 1, the error, the
 * next run time (exponential backoff with jitter), or `dead` after the last
 * attempt. An admin can queue a dead job again.
 */

export type JobRow = typeof jobs.$inferSelect

/** What the dispatcher needs to hand a job over. */
export interface JobRef {
  id: string
  name: string
  runAt: Date
  maxAttempts: number
  /** How often an admin queued it again (0 for a new job). */
  generation: number
  /** The W3C trace context stored with the job, when its transaction was traced (QStash forwards it too). */
  traceparent?: string | null | undefined
}

export interface JobSpec {
  name: string
  payload: Record<string, unknown>
  /** Not before this time (delayed jobs). Default: now. */
  runAt?: Date
  maxAttempts?: number
}

/** Inserts a job in the caller's transaction; dispatch it once that commits. */
export async function enqueueJob(tx: Transaction | Database, spec: JobSpec, now = new Date()): Promise<JobRef> {
  const ref: JobRef = {
    id: uuidv7(now.getTime()),
    name: spec.name,
    runAt: spec.runAt ?? now,
    maxAttempts: spec.maxAttempts ?? 5,
    generation: 0,
    traceparent: activeTraceparent() ?? null,
  }
  await tx.insert(jobs).values({
    id: ref.id,
    name: ref.name,
    payload: spec.payload,
    maxAttempts: ref.maxAttempts,
    runAt: ref.runAt,
    traceparent: ref.traceparent,
    createdAt: now,
    updatedAt: now,
  })
  return ref
}

/** What a handler gets. */
export interface JobContext<D> {
  job: JobRow
  tx: Transaction
  deps: D
  /** Adds a job in this transaction; it is handed over after the commit. */
  enqueue(spec: JobSpec): Promise<void>
  /** Runs after the commit (cache invalidation and the like). */
  afterCommit(work: () => Promise<unknown> | undefined): void
}

export type JobHandler<D> = (ctx: JobContext<D>) => Promise<void>

export interface JobRuntime<D> {
  db: Database
  handlers: Record<string, JobHandler<D>>
  deps: D
  logger: Logger
  /** Hands over jobs created by a handler. */
  dispatch(jobs: JobRef[]): void
  /** Keeps post-commit work alive (Workers' waitUntil). */
  waitUntil(work: Promise<unknown>): void
  /** First retry after this; doubles per attempt, capped at 5 minutes, ±50 % jitter. */
  backoffBaseMs: number
  handlerTimeoutMs?: number
  /** Told when a run starts and how it ended (the job metrics of Bun and Node). */
  observer?: JobObserver | undefined
}

export type RunOutcome =
  | { kind: 'done'; job: JobRow }
  | { kind: 'nothing' }
  | { kind: 'failed'; jobId: string; error: string; dead: boolean }

const TIMEOUT = Symbol('timeout')

async function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const result = await Promise.race([work, new Promise<typeof TIMEOUT>((r) => (timer = setTimeout(() => r(TIMEOUT), ms)))])
  clearTimeout(timer)
  if (result === TIMEOUT) throw new Error(`handler ran longer than ${ms} ms`)
  return result as T
}

/**
 * Runs one job in one transaction. `claim` picks and locks the row (by id
 * for a delivery, or the next due one for the runner); it returns nothing when
 * there is nothing to run.
 */
async function execute<D>(
  rt: JobRuntime<D>,
  claim: (tx: Transaction) => Promise<JobRow | undefined>,
  fallbackId?: string,
): Promise<RunOutcome> {
  let followUps: JobRef[] = []
  let after: (() => Promise<unknown> | undefined)[] = []
  let claimedId = fallbackId
  let claimed: { name: string; at: number } | undefined
  // The run's span, a child of the context stored with the job (the transaction that wrote it): a trace goes on
  // across the outbox, whoever runs the job, and every attempt is a span of its own under that context.
  let span: Span | undefined
  let runContext: Context | undefined
  let result: RunOutcome
  const finish = (run: typeof claimed, how: RunResult) => {
    if (run) rt.observer?.finished(run.name, how, (performance.now() - run.at) / 1000)
  }
  try {
    result = await rt.db.transaction(async (tx) => {
      const picked = await claim(tx as Transaction)
      if (!picked) return { kind: 'nothing' } as const
      claimedId = picked.id
      const [job] = await tx
        .update(jobs)
        .set({ status: 'running', attempts: sql`${jobs.attempts} + 1`, updatedAt: new Date() })
        .where(and(eq(jobs.id, picked.id), eq(jobs.status, 'pending')))
        .returning()
      if (!job) return { kind: 'nothing' } as const
      if (!claimed) {
        claimed = { name: job.name, at: performance.now() }
        rt.observer?.started()
      }
      if (!span) {
        const parent = contextOf(job.traceparent)
        span = tracer().startSpan(
          `job ${job.name}`,
          { kind: SpanKind.CONSUMER, attributes: { 'job.id': job.id, 'job.name': job.name, 'job.attempt': job.attempts } },
          parent,
        )
        runContext = trace.setSpan(parent, span)
      }
      try {
        // The handler runs in a savepoint: when it fails, its effects roll back while this transaction
        // keeps the job's row locked, and the failure is recorded before any other runner can see the job.
        await context.with(runContext!, () =>
          tx.transaction(async (sp) => {
            const handler = rt.handlers[job.name]
            if (!handler) throw new Error(`no handler for jobs named ${job.name}`)
            const ctx: JobContext<D> = {
              job,
              tx: sp as Transaction,
              deps: rt.deps,
              enqueue: async (spec) => {
                followUps.push(await enqueueJob(sp as Transaction, spec))
              },
              afterCommit: (work) => {
                after.push(work)
              },
            }
            await within(handler(ctx), rt.handlerTimeoutMs ?? 30_000)
          }),
        )
      } catch (err) {
        followUps = []
        after = []
        const error = err instanceof Error ? err.message : String(err)
        const [row] = await tx
          .update(jobs)
          .set({
            lastError: error.slice(0, 2000),
            status: sql`case when ${jobs.attempts} >= ${jobs.maxAttempts} then 'dead' else 'pending' end`,
            runAt: backoff(rt.backoffBaseMs, sql`${jobs.attempts} - 1`),
            updatedAt: new Date(),
          })
          .where(eq(jobs.id, job.id))
          .returning({ status: jobs.status })
        return { kind: 'failed', jobId: job.id, error, dead: row?.status === 'dead' } as const
      }
      await tx.update(jobs).set({ status: 'succeeded', lastError: null, updatedAt: new Date() }).where(eq(jobs.id, job.id))
      return { kind: 'done', job } as const
    })
  } catch (err) {
    // The transaction itself failed (the database went away mid-run): record the attempt on its own.
    const error = err instanceof Error ? err.message : String(err)
    if (claimedId === undefined) throw err
    let dead = false
    try {
      dead = await recordFailure(rt.db, claimedId, error, rt.backoffBaseMs)
    } finally {
      // The run has ended even when the failure cannot be recorded (the database is still gone).
      finish(claimed, dead ? 'dead' : 'retry')
      claimed = undefined
    }
    result = { kind: 'failed', jobId: claimedId, error, dead }
  }
  finish(claimed, result.kind === 'done' ? 'succeeded' : result.kind === 'failed' && result.dead ? 'dead' : 'retry')
  if (span) {
    if (result.kind === 'failed') {
      span.setAttribute('job.outcome', result.dead ? 'dead' : 'retry')
      span.setStatus({ code: SpanStatusCode.ERROR, message: result.error })
    } else span.setAttribute('job.outcome', result.kind === 'done' ? 'succeeded' : 'already finished')
    span.end()
  }
  if (result.kind === 'failed') {
    rt.logger.warn(result.dead ? 'job failed for the last time: dead' : 'job failed; will retry', {
      jobId: result.jobId,
      traceId: traceIdOf(span),
      error: result.error,
    })
    return result
  }
  if (result.kind === 'done') {
    // Handed over in the run's context: a publish is a span of this run.
    const handOver = () => {
      if (followUps.length > 0) rt.dispatch(followUps)
      for (const work of after) {
        const p = work()
        if (p) rt.waitUntil(p)
      }
    }
    if (runContext) context.with(runContext, handOver)
    else handOver()
  }
  return result
}

/** The next run time after a failure: base × 2^(attempts so far − 1), at most 5 minutes, ±50 % jitter. */
const backoff = (baseMs: number, previous: ReturnType<typeof sql>) =>
  sql`now() + make_interval(secs => least(300, ${baseMs / 1000}::float8 * power(2, ${previous})) * (0.5 + random()))`

/** Records a failed attempt (its transaction rolled back): the next run time, or `dead`. Returns whether it is dead. */
export async function recordFailure(db: Database, id: string, error: string, backoffBaseMs: number): Promise<boolean> {
  const [row] = await db
    .update(jobs)
    .set({
      attempts: sql`${jobs.attempts} + 1`,
      lastError: error.slice(0, 2000),
      status: sql`case when ${jobs.attempts} + 1 >= ${jobs.maxAttempts} then 'dead' else 'pending' end`,
      runAt: backoff(backoffBaseMs, sql`${jobs.attempts}`),
      updatedAt: new Date(),
    })
    .where(and(eq(jobs.id, id), eq(jobs.status, 'pending')))
    .returning({ status: jobs.status })
  return row?.status === 'dead'
}

/** Runs the job with this id, if it is still pending (a QStash delivery). A finished job is a no-op. */
export function runJobById<D>(rt: JobRuntime<D>, id: string): Promise<RunOutcome> {
  return execute(
    rt,
    async (tx) => {
      const [row] = await tx.select().from(jobs).where(eq(jobs.id, id)).limit(1)
      return row
    },
    id,
  )
}

/** Runs the next due job that no other runner holds (`FOR UPDATE SKIP LOCKED`). */
export function runNextDueJob<D>(rt: JobRuntime<D>): Promise<RunOutcome> {
  return execute(rt, async (tx) => {
    const [row] = await tx
      .select()
      .from(jobs)
      .where(and(eq(jobs.status, 'pending'), lte(jobs.runAt, new Date())))
      .orderBy(jobs.runAt)
      .limit(1)
      .for('update', { skipLocked: true })
    return row
  })
}

/** Runs due jobs until none is left or `limit` ran (Workers' cron, tests). */
export async function drainDueJobs<D>(rt: JobRuntime<D>, limit = 100): Promise<number> {
  let ran = 0
  while (ran < limit) {
    const outcome = await runNextDueJob(rt)
    if (outcome.kind === 'nothing') break
    ran++
  }
  return ran
}
