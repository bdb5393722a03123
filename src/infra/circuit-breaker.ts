/** The breaker is open: the dependency failed repeatedly, and calls fail at once until it is probed again. */
export class CircuitOpenError extends Error {
  constructor(name: string, retryInMs: number) {
    super(`${name} is failing; not calling it for ${Math.ceil(retryInMs / 1000)} s`)
    this.name = 'CircuitOpenError'
  }
}

/**
 * A circuit breaker: after `failureThreshold` consecutive failures the
 * dependency is not called for `openMs`; then one call is let through, and its
 * outcome closes or re-opens the circuit. A dead dependency costs one quick
 * failure per call instead of a timeout per call, so work does not pile up.
 *
 * @example
 * ```ts
 * const breaker = createCircuitBreaker('email API', { failureThreshold: 5, openMs: 30_000 })
 * await breaker.run(() => fetch(url, init))
 * ```
 */
export function createCircuitBreaker(name: string, opts: { failureThreshold: number; openMs: number; now?: () => number }) {
  const now = opts.now ?? Date.now
  let failures = 0
  let openUntil = 0
  let probing = false
  return {
    get state(): 'closed' | 'open' | 'half-open' {
      if (failures < opts.failureThreshold) return 'closed'
      return now() < openUntil ? 'open' : 'half-open'
    },
    async run<T>(work: () => Promise<T>): Promise<T> {
      if (failures >= opts.failureThreshold) {
        if (now() < openUntil || probing) throw new CircuitOpenError(name, Math.max(0, openUntil - now()))
        probing = true
      }
      try {
        const result = await work()
        failures = 0
        return result
      } catch (err) {
        failures++
        if (failures >= opts.failureThreshold) openUntil = now() + opts.openMs
        throw err
      } finally {
        probing = false
      }
    },
  }
}
