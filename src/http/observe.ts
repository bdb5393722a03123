import type { MiddlewareHandler } from 'hono'
import { matchedRoutes } from 'hono/route'
import type { Logger } from '../observability/logger.ts'
import { LATENCY_BUCKETS, type Metrics } from '../observability/metrics.ts'
import type { AppEnv } from './context.ts'

const SANE_ID = /^[\w\-=.:]{1,128}$/

/** The route pattern that answered (`/v1/products/:id`), or `unmatched`. Patterns, never raw paths: bounded label sets, no ids or query strings in logs. */
export function routeOf(c: Parameters<MiddlewareHandler>[0]): string {
  const routes = matchedRoutes(c)
  for (let i = routes.length - 1; i >= 0; i--) {
    const r = routes[i]!
    if (r.method !== 'ALL') return r.path
  }
  return 'unmatched'
}

/**
 * The outermost middleware: gives the request its id (the caller's
 * `X-Request-Id` when it is sane, else a new UUID), times it, and writes one
 * log line and the request metrics once the answer is ready. One layer instead
 * of three, because it runs on every request of the hot path.
 *
 * @example
 * ```ts
 * app.use(observe({ logger, metrics }))
 * ```
 */
export function observe(opts: { logger: Logger; metrics?: Metrics | undefined }): MiddlewareHandler<AppEnv> {
  const { logger, metrics } = opts
  const logRequests = logger.enabled('info')
  const requests = metrics?.counter('edgeshop_http_requests_total', 'HTTP requests by method, route and status', [
    'method',
    'route',
    'status',
  ])
  const latency = metrics?.histogram('edgeshop_http_request_duration_seconds', 'HTTP request latency by route', ['route'], LATENCY_BUCKETS)
  let inFlight = 0
  metrics?.gauge('edgeshop_http_requests_in_flight', 'Requests received and not yet answered', () => inFlight)

  return async function observeRequest(c, next) {
    const start = performance.now()
    const given = c.req.header('x-request-id')
    const requestId = given !== undefined && SANE_ID.test(given) ? given : crypto.randomUUID()
    c.set('requestId', requestId)
    inFlight++
    try {
      await next()
    } finally {
      inFlight--
    }
    c.res.headers.set('X-Request-Id', requestId)
    if (!logRequests && !metrics) return
    const durationMs = performance.now() - start
    const route = routeOf(c)
    const status = c.res.status
    if (requests) {
      requests.inc({ method: c.req.method, route, status })
      latency!.observe({ route }, durationMs / 1000)
    }
    if (logRequests) {
      logger.info('request', { method: c.req.method, route, status, durationMs: Math.round(durationMs * 100) / 100, requestId })
    }
  }
}
