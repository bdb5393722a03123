import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi'
import type { Redis } from '@upstash/redis'
import type { Context } from 'hono'
import { AppError } from '../../core/errors.ts'
import type { AppEnv, Config, Metrics } from '../../http/context.ts'
import { json, problems } from '../../http/openapi.ts'
import { isLoopback, timingSafeEqual } from '../../lib/compare.ts'
import { checkDatabase } from './readiness.ts'

const Health = z.object({ status: z.literal('ok') }).openapi('Health')

const Readiness = z
  .object({
    status: z.enum(['ready', 'unavailable', 'draining']).openapi({
      description: '`draining` while Bun or Node shut down: still answering, but send new requests elsewhere.',
    }),
    checks: z.object({
      db: z.enum(['ok', 'unavailable', 'read_only', 'disk_full']).openapi({
        description:
          '`unavailable` when it does not answer; `read_only` when it answers but refuses writes (a standby, `default_transaction_read_only`); `disk_full` when its disk has no room for new data. Each of the three makes the service unready: writes would answer 503.',
      }),
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
  operationId: 'getHealth',
  tags: ['System'],
  security: [],
  summary: 'Liveness: the process answers',
  description: 'Touches no dependency. Use it for liveness probes; use `/readyz` to decide whether to send traffic.',
  responses: { 200: json(Health, 'The process is alive') },
})

const readyz = createRoute({
  method: 'get',
  path: '/readyz',
  operationId: 'getReadiness',
  tags: ['System'],
  security: [],
  summary: 'Readiness: the database answers and takes writes',
  description:
    'Checks, within a bound of under two seconds, that the database answers and would take a write (it is not read-only and has disk space; the check writes nothing that stays), and Redis when configured. 503 when the database does not answer or refuses writes, and while Bun or Node shut down (`draining`).',
  responses: {
    200: json(Readiness, 'Ready to serve'),
    503: json(Readiness, 'The database is unreachable or refuses writes, or the process is shutting down'),
  },
})

const metricsAccess: Record<string, string[]>[] = [{ metricsToken: [] }, {}]

const metricsRoute = createRoute({
  method: 'get',
  path: '/metrics',
  operationId: 'getMetrics',
  tags: ['System'],
  summary: 'Prometheus metrics',
  description:
    'Request counts and latency histograms by route and status, database pool gauges. With `METRICS_TOKEN` set it needs `Authorization: Bearer <METRICS_TOKEN>`; without, only loopback peers may read it. Collected on Bun and Node; on Workers use Workers analytics (404).',
  // The token, or none: without METRICS_TOKEN set, loopback peers read it with no credentials.
  security: metricsAccess,
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

/** What the system routes use. */
export interface SystemRouteServices {
  readonly config: Config
  readonly redis: Redis | undefined
  readonly metrics: Metrics | undefined
  readonly mode: { queue: 'embedded' | 'qstash' }
  draining(): boolean
  peerAddress(c: Context): string | undefined
}

/** `/healthz`, `/readyz` and `/metrics`. */
export function systemRoutes(services: SystemRouteServices) {
  const { redis, metrics, config } = services
  // Load balancers and the kubelet ask /readyz every few seconds: what it answered is what an operator alerts on.
  const answers = metrics?.counter('edgeshop_readyz_total', 'Answers of /readyz by status (ready, unavailable, draining)', ['status'])
  return new OpenAPIHono<AppEnv>()
    .openapi(healthz, (c) => {
      c.header('Cache-Control', 'no-store')
      return c.json({ status: 'ok' as const }, 200)
    })
    .openapi(readyz, async (c) => {
      const scope = c.get('scope')
      const [db, cache] = await Promise.all([
        checkDatabase(scope.database, DB_CHECK_MS),
        redis ? check(() => redis.ping(), CACHE_CHECK_MS) : Promise.resolve(undefined),
      ])
      const ready = db === 'ok'
      const draining = services.draining()
      const body = {
        status: draining ? ('draining' as const) : ready ? ('ready' as const) : ('unavailable' as const),
        checks: {
          db,
          cache: cache === undefined ? ('disabled' as const) : cache ? ('ok' as const) : ('unavailable' as const),
          queue: services.mode.queue === 'qstash' ? ('ok' as const) : ('embedded' as const),
        },
      }
      answers?.inc({ status: body.status })
      c.header('Cache-Control', 'no-store')
      if (!ready) c.header('Retry-After', '1')
      if (!ready || draining) return c.json(body, 503)
      return c.json(body, 200)
    })
    .openapi(metricsRoute, async (c) => {
      if (!metrics) throw new AppError('not_found', 'Metrics are collected on Bun and Node only')
      if (config.metricsToken !== undefined) {
        const header = c.req.header('authorization') ?? ''
        const token = header.startsWith('Bearer ') ? header.slice(7) : ''
        if (!timingSafeEqual(token, config.metricsToken)) throw new AppError('unauthorized', 'A valid metrics token is required')
      } else if (!isLoopback(services.peerAddress(c))) {
        throw new AppError('forbidden', 'Set METRICS_TOKEN to read metrics from other hosts')
      }
      c.header('Cache-Control', 'no-store')
      return c.text(await metrics.scrape(), 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' })
    })
}
