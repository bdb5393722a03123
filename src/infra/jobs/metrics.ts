import { sql } from 'drizzle-orm'
import { type Database, rowsOf } from '../../db/database.ts'
import { LATENCY_BUCKETS, type Metrics } from '../../observability/metrics.ts'

/*
 * What an operator scales and pages on for the job queue. The queue is the
 * jobs table, shared by every instance, so its depth is read from the table
 * (at scrape time, bounded); what one process runs is counted in-process
 * and summed across instances by Prometheus.
 *
 * A job being run is still `pending` to everyone else: a run claims the row
 * and finishes it in one transaction, so "due" counts the jobs running now
 * as well as those waiting for a runner.
 */

/**
 * The jobs whose time has come and that have not finished (waiting or
 * running): what an autoscaler sizes the workers on. KEDA's PostgreSQL
 * scaler runs this text (deploy/k8s/base/worker.yaml); `jobs_due_idx` makes
 * it a range scan of the due jobs only.
 */
export const DUE_JOBS_SQL = "SELECT count(*) FROM jobs WHERE status = 'pending' AND run_at <= now()"

export interface QueueDepth {
  /** Pending jobs whose run time has passed (waiting for a runner, or running now). */
  due: number
  /** How long the oldest of them has been due, in seconds (0 when none is). */
  oldestDueSeconds: number
  /** Jobs that failed their last attempt and wait for an admin. */
  dead: number
  /** QStash only: pending jobs not handed over yet, and how long the oldest has waited. */
  handover?: { waiting: number; oldestSeconds: number }
}

/** Reads the queue's depth in one statement; each count is a scan of one index (due, dead, undispatched). */
export async function queueDepth(db: Database, opts: { handover: boolean }): Promise<QueueDepth> {
  const handover = opts.handover
    ? sql`, (select count(*) from jobs where status = 'pending' and dispatched_at is null)::int as waiting,
         coalesce(extract(epoch from now() - (select min(created_at) from jobs where status = 'pending' and dispatched_at is null)), 0)::float8 as oldest_waiting`
    : sql``
  const [row] = rowsOf<{ due: number; oldest_due: number; dead: number; waiting?: number; oldest_waiting?: number }>(
    await db.execute(sql`select (${sql.raw(DUE_JOBS_SQL)})::int as due,
      coalesce(extract(epoch from now() - (select min(run_at) from jobs where status = 'pending' and run_at <= now())), 0)::float8 as oldest_due,
      (select count(*) from jobs where status = 'dead')::int as dead${handover}`),
  )
  if (!row) throw new Error('the queue depth query returned no row')
  return {
    due: Number(row.due),
    oldestDueSeconds: Math.max(0, Number(row.oldest_due)),
    dead: Number(row.dead),
    ...(opts.handover ? { handover: { waiting: Number(row.waiting), oldestSeconds: Math.max(0, Number(row.oldest_waiting)) } } : {}),
  }
}

/** How a run ended: committed, failed with attempts left, or failed for the last time. */
export type RunResult = 'succeeded' | 'retry' | 'dead'

/** What the job runtime reports about runs in this process. */
export interface JobObserver {
  started(): void
  finished(job: string, result: RunResult, seconds: number): void
}

/**
 * The queue-depth gauges (read from the table before each scrape, at most
 * `boundMs`; past it the last values are rendered) and the observer of runs
 * in this process.
 */
export function registerJobMetrics(metrics: Metrics, db: Database, opts: { handover: boolean; boundMs?: number }): JobObserver {
  let depth: QueueDepth = { due: Number.NaN, oldestDueSeconds: Number.NaN, dead: Number.NaN }
  let reading: Promise<void> | undefined
  metrics.beforeScrape(
    () =>
      (reading ??= queueDepth(db, opts)
        .then((d) => {
          depth = d
        })
        .finally(() => {
          reading = undefined
        })),
    opts.boundMs ?? 1000,
  )
  metrics.gauge('edgeshop_job_queue_due', 'Jobs due and not finished, waiting or running (all instances)', () => depth.due)
  metrics.gauge(
    'edgeshop_job_queue_oldest_due_seconds',
    'How long the oldest due job has been due (all instances)',
    () => depth.oldestDueSeconds,
  )
  metrics.gauge('edgeshop_job_queue_dead', 'Jobs that failed their last attempt (all instances)', () => depth.dead)
  if (opts.handover) {
    metrics.gauge('edgeshop_jobs_waiting_for_handover', 'Pending jobs not handed to QStash yet (all instances)', () =>
      depth.handover ? depth.handover.waiting : Number.NaN,
    )
    metrics.gauge('edgeshop_jobs_waiting_for_handover_oldest_seconds', 'How long the oldest of them has waited', () =>
      depth.handover ? depth.handover.oldestSeconds : Number.NaN,
    )
  }

  let running = 0
  metrics.gauge('edgeshop_jobs_running', 'Jobs this process is running now', () => running)
  const runs = metrics.counter('edgeshop_job_runs_total', 'Job runs by job name and result', ['name', 'result'])
  const durations = metrics.histogram(
    'edgeshop_job_run_duration_seconds',
    'How long a job run took, claim to commit',
    ['name'],
    LATENCY_BUCKETS,
  )
  return {
    started() {
      running++
    },
    finished(job, result, seconds) {
      running--
      runs.inc({ name: job, result })
      durations.observe({ name: job }, seconds)
    },
  }
}
