import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi'
import type { AppEnv } from '../../http/context.ts'
import { json, problems } from '../../http/openapi.ts'
import { AppError } from '../../http/problem.ts'
import { isLoopback, timingSafeEqual } from '../../lib/compare.ts'
import type { Platform } from '../../platform.ts'

const Health = z.object({ status: z.literal('ok') }).openapi('Health')

const Readiness = z
  .object({
    status: z.enum(['ready', 'unavailable']),
    checks: z.object({
      db: z.enum(['ok', 'unavailable']),
      cache: z.enum(['ok', 'disabled', 'unavailable']).openapi({
        description:
          '`disabled` when no Redis is configured; `unavailable` does not make the service unready (catalog reads fall back to the database).',
      }),
      queue: z.enum(['ok', 'embedded']).openapi({ description: '`ok` when QStash delivers jobs, `embedded` for the in-process runner.' }),
    }),
  })
  .openapi('Readiness')

const healthz = createRoute({
  method: 'get',
  path: '/healthz',
  tags: ['System'],
  summary: 'Liveness: the process answers',
  description: 'Touches no dependency. Use it for liveness probes; use `/readyz` to decide whether to send traffic.',
  responses: { 200: json(Health, 'The process is alive') },
})

const readyz = createRoute({
  method: 'get',
  path: '/readyz',
  tags: ['System'],
  summary: 'Readiness: the database answers',
  description:
    'Checks the database (and Redis, when configured) within a bound of under two seconds. 503 when the database does not answer.',
  responses: {
    200: json(Readiness, 'Ready to serve'),
    503: json(Readiness, 'The database is unreachable'),
  },
})

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  tags: ['System'],
  summary: 'Prometheus metrics',
  description:
    'Request counts and latency histograms by route and status, database pool gauges. With `METRICS_TOKEN` set it needs `Authorization: Bearer <METRICS_TOKEN>`; without, only loopback peers may read it. Collected on Bun and Node; on Workers use Workers analytics (404).',
  security: [{ metricsToken: [] }],
  responses: {
    200: { description: 'Prometheus text exposition format 0.0.4', content: { 'text/plain': { schema: z.string() } } },
    ...problems('unauthorized', 'forbidden', 'not_found'),
  },
})

const DB_CHECK_MS = 1500
const CACHE_CHECK_MS = 400

async function check(work: () => Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    await Promise.race([work(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), ms)))])
    return true
  } catch {
    return false
  } finally {
    clearTimeout(timer)
  }
}

/** `/healthz`, `/readyz` and `/metrics`. */
export function systemRoutes(platform: Platform) {
  const { redis, metrics, config } = platform
  return new OpenAPIHono<AppEnv>()
    .openapi(healthz, (c) => {
      c.header('Cache-Control', 'no-store')
      return c.json({ status: 'ok' as const }, 200)
    })
    .openapi(readyz, async (c) => {
      const deps = c.get('deps')
      const [db, cache] = await Promise.all([
        check(() => deps.database.ping(DB_CHECK_MS), DB_CHECK_MS + 100),
        redis ? check(() => redis.ping(), CACHE_CHECK_MS) : Promise.resolve(undefined),
      ])
      const body = {
        status: db ? ('ready' as const) : ('unavailable' as const),
        checks: {
          db: db ? ('ok' as const) : ('unavailable' as const),
          cache: cache === undefined ? ('disabled' as const) : cache ? ('ok' as const) : ('unavailable' as const),
          queue: platform.mode.queue === 'qstash' ? ('ok' as const) : ('embedded' as const),
        },
      }
      c.header('Cache-Control', 'no-store')
      if (!db) {
        c.header('Retry-After', '1')
        return c.json(body, 503)
      }
      return c.json(body, 200)
    })
    .openapi(metricsRoute, async (c) => {
      if (!metrics) throw new AppError('not_found', 'Metrics are collected on Bun and Node only')
      if (config.metricsToken !== undefined) {
        const header = c.req.header('authorization') ?? ''
        const token = header.startsWith('Bearer ') ? header.slice(7) : ''
        if (!timingSafeEqual(token, config.metricsToken)) throw new AppError('unauthorized', 'A valid metrics token is required')
      } else if (!isLoopback(platform.peerAddress(c))) {
        throw new AppError('forbidden', 'Set METRICS_TOKEN to read metrics from other hosts')
      }
      c.header('Cache-Control', 'no-store')
      return c.text(await metrics.scrape(), 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' })
    })
}
