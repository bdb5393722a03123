import { and, desc, eq, lt } from 'drizzle-orm'
import { AppError } from '../../core/errors.ts'
import { decodeCursor, encodeCursor, type Page } from '../../core/page.ts'
import type { Database } from '../../db/database.ts'
import { type JOB_STATUSES, jobs } from '../../db/schema.ts'
import { sampledTraceId } from '../../observability/tracing.ts'

/*
 * The admin's view of the outbox: pages of jobs, newest first. The REST list
 * and the GraphQL `jobs` field both answer from here.
 */

export type JobStatus = (typeof JOB_STATUSES)[number]

/** A job as the API shows it. */
export const jobJson = (j: typeof jobs.$inferSelect) => ({
  id: j.id,
  name: j.name,
  status: j.status,
  attempts: j.attempts,
  lastError: j.lastError,
  traceId: sampledTraceId(j.traceparent),
  runAt: j.runAt.toISOString(),
  createdAt: j.createdAt.toISOString(),
  updatedAt: j.updatedAt.toISOString(),
})
export type JobJson = ReturnType<typeof jobJson>

/** The id inside a list's cursor; 400 `validation_failed` for one that is not ours. */
export function cursorOf(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined
  const id = decodeCursor(cursor)
  if (!id)
    throw new AppError('validation_failed', 'The cursor is not valid', {
      errors: [{ path: 'query.cursor', message: 'is not a cursor from this API' }],
    })
  return id
}

/** One page of jobs, newest first, optionally of one status: one statement. */
export async function listJobs(
  db: Database,
  query: { status?: JobStatus | undefined; limit: number; cursor?: string | undefined },
): Promise<Page<JobJson>> {
  const after = cursorOf(query.cursor)
  const rows = await db
    .select()
    .from(jobs)
    .where(and(query.status ? eq(jobs.status, query.status) : undefined, after ? lt(jobs.id, after) : undefined))
    .orderBy(desc(jobs.id))
    .limit(query.limit + 1)
  const page = rows.slice(0, query.limit)
  return { items: page.map(jobJson), nextCursor: rows.length > query.limit ? encodeCursor(page.at(-1)!.id) : null }
}
