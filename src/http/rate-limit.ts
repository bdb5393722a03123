import type { Context, MiddlewareHandler } from 'hono'
import { AppError } from '../core/errors.ts'
import { type RateDecision, RateLimiterUnavailableError, type RateRule } from '../infra/ratelimit.ts'
import { throttledLog } from '../observability/throttle.ts'
import type { AppEnv, HttpServices } from './context.ts'

export interface RateLimitOptions {
  /** The allowance, counted separately for each key. */
  rule: Omit<RateRule, 'name'> & { name: string }
  /** What to count the request against, e.g. `ip:…` and `email:…`. Each key has its own allowance; all must allow. */
  keys: (c: Context<AppEnv>) => Promise<string[]> | string[]
  /** When the limiter fails or is too slow: `closed` answers 503 (auth), `open` lets the request through (reads). */
  onUnavailable: 'closed' | 'open'
}

function headers(rule: { limit: number }, tightest: RateDecision, nowMs: number): Record<string, string> {
  return {
    'RateLimit-Limit': String(rule.limit),
    'RateLimit-Remaining': String(tightest.remaining),
    'RateLimit-Reset': String(Math.max(0, Math.ceil((tightest.resetMs - nowMs) / 1000))),
  }
}

/**
 * Rate limiting as middleware: counts the request against every key, always
 * sends `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (for
 * the tightest key), and answers 429 `rate_limited` with `Retry-After` once an
 * allowance is used up. A limiter that fails or answers after
 * RATE_LIMIT_TIMEOUT_MS fails closed (503) or open, as the route chose.
 *
 * @example
 * ```ts
 * rateLimit(services, { rule: { name: 'login', limit: 10, windowSeconds: 60 }, keys: (c) => [`ip:${ip}`], onUnavailable: 'closed' })
 * ```
 */
export function rateLimit(
  services: Pick<HttpServices, 'limiter' | 'config' | 'logger' | 'rateLimitRefusals'>,
  opts: RateLimitOptions,
): MiddlewareHandler<AppEnv> {
  const { limiter, config, logger } = services
  const budget = config.rateLimitTimeoutMs
  const refusedLimited = services.rateLimitRefusals?.with({ rule: opts.rule.name, reason: 'limited' })
  const refusedUnavailable = services.rateLimitRefusals?.with({ rule: opts.rule.name, reason: 'unavailable' })
  const unavailable = throttledLog(logger, 'warn', 'rate limiter unavailable', 10_000)

  return async function rateLimit(c, next) {
    const keys = await opts.keys(c)
    let decisions: RateDecision[]
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new RateLimiterUnavailableError(`no answer within ${budget} ms`)), budget)
      })
      decisions = await Promise.race([Promise.all(keys.map((key) => limiter.limit(opts.rule, key))), deadline])
    } catch (err) {
      unavailable({ route: opts.rule.name, error: err instanceof Error ? err.message : String(err) })
      if (opts.onUnavailable === 'closed') {
        refusedUnavailable?.inc()
        throw new AppError('service_unavailable', 'Rate limiting is unavailable; retry shortly')
      }
      return next()
    } finally {
      clearTimeout(timer)
    }
    const now = Date.now()
    const tightest = decisions.reduce((a, b) => (b.remaining < a.remaining ? b : a))
    const h = headers(opts.rule, tightest, now)
    if (decisions.some((d) => !d.success)) {
      const blocked = decisions.filter((d) => !d.success).reduce((a, b) => (b.resetMs > a.resetMs ? b : a))
      const retryAfter = String(Math.max(1, Math.ceil((blocked.resetMs - now) / 1000)))
      refusedLimited?.inc()
      throw new AppError('rate_limited', `Too many attempts; retry in ${retryAfter} s`, { headers: { ...h, 'Retry-After': retryAfter } })
    }
    await next()
    for (const [k, v] of Object.entries(h)) c.res.headers.set(k, v)
  }
}
