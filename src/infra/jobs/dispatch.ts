import { Client } from '@upstash/qstash'
import { and, eq, inArray, isNull, lt, sql } from 'drizzle-orm'
import type { Database } from '../../db/database.ts'
import { jobs } from '../../db/schema.ts'
import type { Logger } from '../../observability/logger.ts'
import type { JobRef } from './jobs.ts'

export interface DispatchContext {
  db: Database
  waitUntil(work: Promise<unknown>): void
  /** Runs one job here and now (for runtimes without a runner). */
  runNow(id: string): Promise<unknown>
}

/** Hands committed jobs over to whatever runs them. Never on the response path: it only starts work. */
export interface JobDispatcher {
  readonly kind: 'embedded' | 'qstash'
  dispatch(jobs: JobRef[], ctx: DispatchContext): void
}

/** The path QStash delivers a job to. */
export const jobPath = (name: string) => `/internal/jobs/${name}`
/** Where QStash reports a job whose retries ran out. */
export const JOB_FAILURES_PATH = '/internal/job-failures'

/**
 * QStash: each job is published with `Upstash-Deduplication-Id` = job id (a
 * second publish of one job is dropped), explicit retries (its attempts − 1),
 * `Upstash-Not-Before` for delayed jobs, and a failure callback that marks it
 * dead. A publish that fails leaves `dispatched_at` empty; the minute schedule
 * publishes such jobs again.
 */
export function createQstashDispatcher(opts: { url: string; token: string; publicUrl: string; logger: Logger }): JobDispatcher & {
  publish(db: Database, job: JobRef): Promise<void>
} {
  const client = new Client({
    baseUrl: opts.url,
    token: opts.token,
    retry: { retries: 2, backoff: (n) => 100 * 2 ** n },
    enableTelemetry: false,
  })
  const publish = async (db: Database, job: JobRef) => {
    const notBefore = job.runAt.getTime() > Date.now() + 1000 ? Math.ceil(job.runAt.getTime() / 1000) : undefined
    await client.publishJSON({
      url: `${opts.publicUrl}${jobPath(job.name)}`,
      body: { jobId: job.id },
      // A lost acknowledgement followed by a second publish is dropped by QStash; a job an admin queued again is not.
      deduplicationId: job.generation === 0 ? job.id : `${job.id}.${job.generation}`,
      retries: Math.max(0, job.maxAttempts - 1),
      failureCallback: `${opts.publicUrl}${JOB_FAILURES_PATH}`,
      ...(notBefore ? { notBefore } : {}),
    })
    await db.update(jobs).set({ dispatchedAt: new Date() }).where(eq(jobs.id, job.id))
  }
  return {
    kind: 'qstash',
    publish,
    dispatch(list, { db, waitUntil }) {
      for (const job of list) {
        waitUntil(
          publish(db, job).catch((err) =>
            opts.logger.warn('job not handed to QStash yet; the minute schedule will retry', {
              jobId: job.id,
              error: err instanceof Error ? err.message : String(err),
            }),
          ),
        )
      }
    },
  }
}

/** Jobs QStash never got (the publish failed, or the process died first) that were created before `before`. */
export async function undispatchedJobs(db: Database, before: Date, limit = 500): Promise<JobRef[]> {
  const rows = await db
    .select({ id: jobs.id, name: jobs.name, runAt: jobs.runAt, maxAttempts: jobs.maxAttempts, generation: jobs.generation })
    .from(jobs)
    .where(and(eq(jobs.status, 'pending'), isNull(jobs.dispatchedAt), lt(jobs.createdAt, before)))
    .orderBy(jobs.createdAt)
    .limit(limit)
  return rows
}

/** Marks jobs dead whose delivery QStash gave up on. */
export async function markDead(db: Database, ids: string[], reason: string): Promise<number> {
  if (ids.length === 0) return 0
  const rows = await db
    .update(jobs)
    .set({ status: 'dead', lastError: sql`coalesce(${jobs.lastError}, ${reason})`, updatedAt: new Date() })
    .where(and(inArray(jobs.id, ids), eq(jobs.status, 'pending')))
    .returning({ id: jobs.id })
  return rows.length
}

/**
 * Workers without QStash have no process to run a loop: a due job runs right
 * after the response, in `waitUntil`; delayed ones are picked up by the cron
 * tick (`drainDueJobs`).
 */
export const inlineDispatcher: JobDispatcher = {
  kind: 'embedded',
  dispatch(list, ctx) {
    const soon = Date.now() + 1000
    for (const job of list) if (job.runAt.getTime() <= soon) ctx.waitUntil(ctx.runNow(job.id))
  },
}
