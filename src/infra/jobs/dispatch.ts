import { Client, QstashError } from '@upstash/qstash'
import { and, eq, gt, inArray, isNull, lt, sql } from 'drizzle-orm'
import type { Database } from '../../db/database.ts'
import { jobs } from '../../db/schema.ts'
import { createSlots } from '../../lib/slots.ts'
import type { Logger } from '../../observability/logger.ts'
import type { Metrics } from '../../observability/metrics.ts'
import { throttledLog } from '../../observability/throttle.ts'
import { answered, inSpan } from '../../observability/tracing.ts'
import type { JobRef } from './jobs.ts'

export interface DispatchContext {
  db: Database
  waitUntil(work: Promise<unknown>): void
  /** Runs one job here and now (for runtimes without a runner). */
  runNow(id: string): Promise<unknown>
}

/** What one hand-over of a list of jobs did (the minute schedule reports it). */
export interface HandOverReport {
  published: number
  /** Publishes that failed or ran past their bound; the first one ends the hand-over. */
  failed: number
  /** Already being handed over by this process. */
  skipped: number
  /** Not tried: the hand-over ended early (a failure, no free place within the bound, shutting down). */
  left: number
}

/** Hands committed jobs over to whatever runs them. Never on the response path: it only starts work. */
export interface JobDispatcher {
  readonly kind: 'embedded' | 'qstash'
  dispatch(jobs: JobRef[], ctx: DispatchContext): void
  /** QStash: hands over jobs it never got, through the same cap, waiting for free places (the minute schedule). */
  handOver?(db: Database, jobs: JobRef[]): Promise<HandOverReport>
  /** Starts nothing more and waits for what is in flight (each publish ends within its bound). */
  close?(): Promise<void>
}

/** The path QStash delivers a job to. */
export const jobPath = (name: string) => `/internal/jobs/${name}`
/** Where QStash reports a job whose retries ran out. */
export const JOB_FAILURES_PATH = '/internal/job-failures'

type Requester = Client['http']
type UpstashRequest = Parameters<Requester['request']>[0]

/**
 * The QStash client's transport, bounded: the client builds each request
 * (headers, deduplication, retries, callbacks) and this sends it with an
 * `AbortSignal.timeout` over the whole call, the answer's body included. The
 * client's own transport has no timeout and no signal, so a QStash that
 * accepts and never answers kept every publish, and its socket, forever.
 * A network error is tried again while the bound allows; an HTTP error is
 * not (QStash answered).
 */
function boundedRequester(opts: { baseUrl: string; token: string; timeoutMs: number }): Requester {
  const base = opts.baseUrl.replace(/\/$/, '')
  return {
    request<T>(req: UpstashRequest) {
      // One span per call to QStash, named by the API it calls (`qstash v2/publish`), never by the destination or body.
      const method = req.method ?? 'POST'
      const attributes = { 'http.request.method': method, 'server.address': new URL(req.baseUrl ?? base).host }
      return inSpan(`qstash ${req.path.slice(0, 2).join('/')}`, attributes, (span) =>
        send<T>(req, method, (status) => answered(span, status)),
      )
    },
    requestStream() {
      throw new Error('streams are not used')
    },
  }

  async function send<T>(req: UpstashRequest, method: string, onStatus: (status: number) => void): Promise<T> {
    const url = new URL([req.baseUrl ?? base, ...req.path].join('/'))
    for (const [key, value] of Object.entries(req.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value))
    const headers = new Headers(req.headers as HeadersInit)
    if (!headers.has('Authorization')) headers.set('Authorization', `Bearer ${opts.token}`)
    const signal = AbortSignal.timeout(opts.timeoutMs)
    let res: Response | undefined
    for (let attempt = 0; !res; attempt++) {
      try {
        res = await fetch(url, { method, headers, body: req.body as BodyInit | null | undefined, signal })
      } catch (err) {
        if (signal.aborted || attempt >= 2) throw err
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt))
      }
    }
    onStatus(res.status)
    const text = await res.text()
    if (res.status < 200 || res.status >= 300) throw new QstashError(text || `Error: status=${res.status}`, res.status)
    return (req.parseResponseAsJson === false ? undefined : JSON.parse(text)) as T
  }
}

const timedOut = (err: unknown) => err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')

/**
 * QStash: each job is published with `Upstash-Deduplication-Id` = job id (a
 * second publish of one job is dropped), explicit retries (its attempts − 1),
 * `Upstash-Not-Before` for delayed jobs, and a failure callback that marks it
 * dead. A publish that fails leaves `dispatched_at` empty; the minute schedule
 * publishes such jobs again.
 *
 * Bounded: a publish ends within `timeoutMs` (answer or not), and at most
 * `maxInFlight` are under way in this process. A job that finds no free place
 * is not queued in memory: its row is the queue, and the minute schedule
 * hands it over ({@link JobDispatcher.handOver}). So a QStash that stops
 * answering costs `maxInFlight` open requests, not one per checkout.
 *
 * @example
 * ```ts
 * const dispatcher = createQstashDispatcher({ url, token, publicUrl, logger, timeoutMs: 5000, maxInFlight: 64 })
 * dispatcher.dispatch(jobs, { db, waitUntil, runNow })
 * ```
 */
export function createQstashDispatcher(opts: {
  url: string
  token: string
  publicUrl: string
  logger: Logger
  timeoutMs: number
  maxInFlight: number
  metrics?: Metrics | undefined
}): JobDispatcher & Required<Pick<JobDispatcher, 'handOver' | 'close'>> & { readonly inFlight: number } {
  const client = new Client({ baseUrl: opts.url, token: opts.token, enableTelemetry: false })
  client.http = boundedRequester({ baseUrl: opts.url, token: opts.token, timeoutMs: opts.timeoutMs })
  const places = createSlots(opts.maxInFlight)
  /** Jobs being handed over by this process, so that the schedule does not publish them a second time. */
  const inFlight = new Set<string>()
  const running = new Set<Promise<boolean>>()
  const track = (p: Promise<boolean>) => {
    running.add(p)
    return p.finally(() => running.delete(p))
  }
  let closed = false
  const publishes = opts.metrics?.counter('edgeshop_qstash_publishes_total', 'Jobs handed to QStash, by outcome', ['outcome'])
  const deferred = opts.metrics?.counter(
    'edgeshop_qstash_publishes_deferred_total',
    'Jobs not published at once because the publishes in flight were at their cap; the minute schedule hands them over',
    [],
  )
  opts.metrics?.gauge('edgeshop_qstash_publishes_in_flight', 'Publishes to QStash under way in this process', () => inFlight.size)
  const logFailure = throttledLog(opts.logger, 'warn', 'jobs not handed to QStash yet; the minute schedule will retry', 10_000)
  const logDeferred = throttledLog(
    opts.logger,
    'warn',
    'QStash publishes at their cap (QSTASH_MAX_IN_FLIGHT); jobs left for the minute schedule',
    10_000,
  )

  /** Publishes one job and records the hand-over; true when QStash took it. Never throws. */
  const publish = async (db: Database, job: JobRef): Promise<boolean> => {
    inFlight.add(job.id)
    try {
      const notBefore = job.runAt.getTime() > Date.now() + 1000 ? Math.ceil(job.runAt.getTime() / 1000) : undefined
      await client.publishJSON({
        url: `${opts.publicUrl}${jobPath(job.name)}`,
        body: { jobId: job.id },
        // A lost acknowledgement followed by a second publish is dropped by QStash; a job an admin queued again is not.
        deduplicationId: job.generation === 0 ? job.id : `${job.id}.${job.generation}`,
        retries: Math.max(0, job.maxAttempts - 1),
        failureCallback: `${opts.publicUrl}${JOB_FAILURES_PATH}`,
        ...(notBefore ? { notBefore } : {}),
        // Forwarded on the delivery, so its request span joins the job's trace; the job's run reads the stored one.
        ...(job.traceparent ? { headers: { traceparent: job.traceparent } } : {}),
      })
    } catch (err) {
      publishes?.inc({ outcome: timedOut(err) ? 'timeout' : 'error' })
      logFailure({ jobId: job.id, error: err instanceof Error ? err.message : String(err) })
      inFlight.delete(job.id)
      return false
    }
    publishes?.inc({ outcome: 'ok' })
    try {
      await db.update(jobs).set({ dispatchedAt: new Date() }).where(eq(jobs.id, job.id))
    } catch (err) {
      // QStash has it; the schedule's second publish of it is dropped as a duplicate.
      opts.logger.warn('job handed to QStash but not recorded as such', { jobId: job.id, error: String(err) })
    } finally {
      inFlight.delete(job.id)
    }
    return true
  }

  return {
    kind: 'qstash',
    get inFlight() {
      return inFlight.size
    },
    dispatch(list, { db, waitUntil }) {
      for (const job of list) {
        if (closed || inFlight.has(job.id)) continue
        if (places.busy >= opts.maxInFlight) {
          deferred?.inc({})
          logDeferred({ jobId: job.id })
          continue
        }
        // A place is free, so this takes it at once.
        waitUntil(places.acquire(0).then((release) => release && track(publish(db, job)).finally(release)))
      }
    },
    async handOver(db, list) {
      const report: HandOverReport = { published: 0, failed: 0, skipped: 0, left: 0 }
      let next = 0
      let stop = false
      const worker = async () => {
        while (!stop && !closed && next < list.length) {
          // Waiting longer than one publish's bound means the publishes ahead are not being answered.
          const release = await places.acquire(opts.timeoutMs)
          if (!release || closed) {
            release?.()
            stop = true
            break
          }
          try {
            const job = list[next++]
            if (!job) break
            if (inFlight.has(job.id)) report.skipped++
            else if (await track(publish(db, job))) report.published++
            else {
              report.failed++
              stop = true
            }
          } finally {
            release()
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(opts.maxInFlight, list.length) }, worker))
      report.left = list.length - report.published - report.failed - report.skipped
      return report
    },
    async close() {
      closed = true
      await Promise.allSettled([...running])
    },
  }
}

/** Jobs QStash never got (the publish failed, or the process died first) that were created before `before`, in id order after `after`. */
export async function undispatchedJobs(db: Database, before: Date, limit = 500, after?: string): Promise<JobRef[]> {
  const rows = await db
    .select({
      id: jobs.id,
      name: jobs.name,
      runAt: jobs.runAt,
      maxAttempts: jobs.maxAttempts,
      generation: jobs.generation,
      traceparent: jobs.traceparent,
    })
    .from(jobs)
    .where(and(eq(jobs.status, 'pending'), isNull(jobs.dispatchedAt), lt(jobs.createdAt, before), after ? gt(jobs.id, after) : undefined))
    .orderBy(jobs.id)
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

/**
 * A `ROLE=api` process without QStash: the jobs were written in the request's
 * transaction, and the worker processes' runners take them from the table.
 */
export const outboxOnlyDispatcher: JobDispatcher = {
  kind: 'embedded',
  dispatch() {},
}
