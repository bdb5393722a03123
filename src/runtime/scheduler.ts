import type { Platform } from '../platform.ts'
import { DAILY, MINUTELY, runSchedule } from '../schedule.ts'

/**
 * The in-process scheduler of Bun and Node: every SCHEDULER_TICK_SECONDS it
 * offers each schedule its tick. Ticks of every instance race for the same
 * slot; one runs it (see src/schedule.ts).
 */
export function startScheduler(platform: Platform): { stop(): Promise<void> } {
  const { config, logger } = platform
  let current: Promise<unknown> = Promise.resolve()
  const tick = () => {
    current = (async () => {
      const deps = platform.deps()
      for (const cron of [MINUTELY, DAILY]) {
        try {
          await runSchedule(cron, new Date(), {
            db: deps.db,
            cache: platform.cache,
            dispatcher: platform.dispatcher,
            logger,
            waitUntil: deps.waitUntil,
          })
        } catch (err) {
          logger.warn('schedule tick failed; the next tick tries again', {
            schedule: cron,
            error: err instanceof Error ? err.message : String(err),
          })
        }
      }
    })()
  }
  const timer = setInterval(tick, config.schedulerTickSeconds * 1000)
  timer.unref?.()
  tick()
  return {
    async stop() {
      clearInterval(timer)
      await current
    },
  }
}
