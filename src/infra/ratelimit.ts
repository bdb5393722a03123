import { Ratelimit } from '@upstash/ratelimit'
import type { Redis } from '@upstash/redis'

/** A named allowance: `limit` requests per `windowSeconds`, per key. */
export interface RateRule {
  name: string
  limit: number
  windowSeconds: number
}

export interface RateDecision {
  success: boolean
  limit: number
  remaining: number
  /** When the allowance is whole again, epoch milliseconds. */
  resetMs: number
}

/** The limiter failed or did not answer within its budget; the caller decides to fail open or closed. */
export class RateLimiterUnavailableError extends Error {
  constructor(reason: string, opts?: { cause?: unknown }) {
    super(`rate limiter unavailable: ${reason}`, opts)
    this.name = 'RateLimiterUnavailableError'
  }
}

/**
 * One limiter interface, two engines: Redis through @upstash/ratelimit when
 * Upstash is configured, this process's memory otherwise. Both use the same
 * sliding window (the current window's count plus the previous window's,
 * weighted by how much of it still overlaps), so the headers clients see do
 * not depend on the engine.
 */
export interface RateLimiter {
  readonly kind: 'memory' | 'redis'
  limit(rule: RateRule, key: string): Promise<RateDecision>
}

interface Slot {
  window: number
  current: number
  previous: number
}

/** The in-process sliding window. Bounded: at most `maxKeys` keys; the oldest are forgotten first. */
export function createMemoryRateLimiter(opts: { maxKeys?: number; now?: () => number } = {}): RateLimiter {
  const maxKeys = opts.maxKeys ?? 100_000
  const now = opts.now ?? Date.now
  const slots = new Map<string, Slot>()
  return {
    kind: 'memory',
    async limit(rule, key) {
      const t = now()
      const windowMs = rule.windowSeconds * 1000
      const w = Math.floor(t / windowMs)
      const id = `${rule.name}\u0000${key}`
      let s = slots.get(id)
      if (!s || s.window < w - 1) s = { window: w, current: 0, previous: 0 }
      else if (s.window === w - 1) s = { window: w, current: 0, previous: s.current }
      slots.delete(id)
      slots.set(id, s)
      if (slots.size > maxKeys) slots.delete(slots.keys().next().value!)
      const overlap = 1 - (t - w * windowMs) / windowMs
      const used = s.previous * overlap + s.current
      const success = used + 1 <= rule.limit
      if (success) s.current++
      const remaining = Math.max(0, Math.floor(rule.limit - (s.previous * overlap + s.current)))
      return { success, limit: rule.limit, remaining, resetMs: (w + 1) * windowMs }
    },
  }
}

/**
 * @upstash/ratelimit's sliding window on Redis, with its ephemeral cache (a
 * key it has seen blocked is refused without a round trip until its reset).
 * A timeout or a network error becomes {@link RateLimiterUnavailableError}:
 * the library itself would fail open on timeout, which auth routes must not.
 */
export function createRedisRateLimiter(opts: { redis: Redis; timeoutMs: number }): RateLimiter {
  const limiters = new Map<string, Ratelimit>()
  const limiterFor = (rule: RateRule) => {
    const id = `${rule.name}:${rule.limit}:${rule.windowSeconds}`
    let rl = limiters.get(id)
    if (!rl) {
      rl = new Ratelimit({
        redis: opts.redis,
        limiter: Ratelimit.slidingWindow(rule.limit, `${rule.windowSeconds} s`),
        prefix: `edgeshop:rl:${rule.name}`,
        ephemeralCache: new Map(),
        timeout: opts.timeoutMs,
        analytics: false,
      })
      limiters.set(id, rl)
    }
    return rl
  }
  return {
    kind: 'redis',
    async limit(rule, key) {
      let result: Awaited<ReturnType<Ratelimit['limit']>>
      try {
        result = await limiterFor(rule).limit(key)
      } catch (err) {
        throw new RateLimiterUnavailableError(err instanceof Error ? err.message : String(err), { cause: err })
      }
      if (result.reason === 'timeout') throw new RateLimiterUnavailableError(`no answer within ${opts.timeoutMs} ms`)
      return { success: result.success, limit: result.limit, remaining: Math.max(0, result.remaining), resetMs: result.reset }
    },
  }
}
