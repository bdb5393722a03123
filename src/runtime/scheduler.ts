import { DAILY, MINUTELY, runSchedule } from '../features/schedule/index.ts'
import type { Services } from '../services.ts'

/**
 * The in-process scheduler of Bun and Node: every SCHEDULER_TICK_SECONDS it
 * offers each schedule its tick. Ticks of every instance race for the same
 * slot; one runs it (see src/features/schedule/).
 */
export function startScheduler(services: Services): { stop(): Promise<void> } {
  const { config, logger } = services
  let current: Promise<unknown> = Promise.resolve()
  const tick = () => {
    current = (async () => {
      const schedule = services.schedule(services.scope())
      for (const cron of [MINUTELY, DAILY]) {
        try {
          const report = await runSchedule(cron, new Date(), schedule)
          if (!report.ran) logger.debug('schedule tick skipped', { schedule: cron, reason: report.reason })
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
