import type { Logger } from '../../observability/logger.ts'
import type { JobDispatcher } from './dispatch.ts'
import { type JobRuntime, runNextDueJob } from './jobs.ts'

/**
 * The embedded runner of a Bun or Node process: a few loops that each run
 * the next due job (`FOR UPDATE SKIP LOCKED`, so several processes on one
 * PostgreSQL share the work and never run one job twice at once), sleeping
 * up to `pollMs` when there is nothing to do, and woken at once when a job
 * is dispatched.
 */
export function createEmbeddedRunner<D>(opts: { runtime: () => JobRuntime<D>; concurrency: number; pollMs: number; logger: Logger }) {
  let running = false
  const loops: Promise<void>[] = []
  const sleepers = new Set<() => void>()

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        sleepers.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      sleepers.add(done)
    })

  async function loop() {
    let idleMs = opts.pollMs
    while (running) {
      try {
        const outcome = await runNextDueJob(opts.runtime())
        if (outcome.kind === 'nothing') await sleep(opts.pollMs)
        idleMs = opts.pollMs
      } catch (err) {
        // The database is unreachable: back off, up to 10 s, and keep trying.
        opts.logger.warn('job runner cannot reach the database', { error: err instanceof Error ? err.message : String(err) })
        await sleep(idleMs)
        idleMs = Math.min(10_000, idleMs * 2)
      }
    }
  }

  const runner = {
    start() {
      if (running) return
      running = true
      for (let i = 0; i < opts.concurrency; i++) loops.push(loop())
    },
    wake() {
      for (const wake of [...sleepers]) wake()
    },
    /** Stops taking new jobs and waits for the ones running to finish. */
    async stop() {
      running = false
      runner.wake()
      await Promise.allSettled(loops)
      loops.length = 0
    },
    /**
     * A dispatcher that only wakes the loops: the jobs are already in the
     * table. Only for a job due now: one due later (an order's expiry) is
     * found by a loop's own poll, and waking the loops for every checkout
     * sent each of them to the database for nothing.
     */
    dispatcher: {
      kind: 'embedded',
      dispatch: (list) => {
        const now = Date.now()
        if (list.some((job) => job.runAt.getTime() <= now)) runner.wake()
      },
    } as JobDispatcher,
  }
  return runner
}
