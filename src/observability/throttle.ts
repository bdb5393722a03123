import type { LogFields, Logger } from './logger.ts'

/**
 * Logs a recurring failure once per interval with the number of times it
 * happened since the last line, instead of once per request.
 *
 * @example
 * ```ts
 * const cacheDown = throttledLog(logger, 'warn', 'cache unavailable', 10_000)
 * cacheDown({ error: err.message })
 * ```
 */
export function throttledLog(logger: Logger, level: 'warn' | 'error', msg: string, intervalMs: number, now: () => number = Date.now) {
  let last = -Infinity
  let suppressed = 0
  return (fields?: LogFields) => {
    const t = now()
    if (t - last < intervalMs) {
      suppressed++
      return
    }
    logger[level](msg, { ...fields, occurrences: suppressed + 1 })
    last = t
    suppressed = 0
  }
}
