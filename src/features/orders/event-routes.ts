import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi'
import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import { authenticate, requireRole } from '../../http/auth.ts'
import type { AppEnv, HttpServices } from '../../http/context.ts'
import { EXAMPLE_IDS } from '../../http/examples.ts'
import { problems } from '../../http/openapi.ts'
import type { StreamGate } from '../../http/stream-gate.ts'
import { text } from '../../http/text.ts'
import type { OrderEventsBus } from '../../infra/order-events-bus.ts'
import { ensureVisibleOrder, eventPump, eventsAfter, eventsWithIds, latestEventId } from './events.ts'
import { OrderId } from './schemas.ts'

/** What a client waits before reconnecting, sent as the stream's first line (`retry:`). */
const RETRY_MS = 1000

const bearer = [{ bearerAuth: [] }]
const streamProblems = ['validation_failed', 'too_many_streams', 'unauthorized', 'service_unavailable'] as const

const LastEventId = z.object({
  'last-event-id': text({
    pattern: /^\d{1,15}$/,
    message: 'must be the id of an event this API sent (decimal digits)',
    description: 'The `id:` of the last event received: the stream starts after it. A reconnecting EventSource sends it by itself.',
  }).optional(),
})

const eventStream = (description: string, example: string) => ({
  description,
  content: {
    'text/event-stream': { schema: z.string().openapi({ description: 'Server-sent events (docs/API.md, Order events).' }), example },
  },
})

const example = (orderId: string) =>
  `retry: ${RETRY_MS}\n\n` +
  `id: 41\nevent: status\ndata: {"orderId":"${orderId}","status":"payment_processing","previousStatus":"pending_payment","at":"2026-01-15T09:36:00.000Z"}\n\n` +
  `id: 42\nevent: status\ndata: {"orderId":"${orderId}","status":"paid","previousStatus":"payment_processing","at":"2026-01-15T09:36:01.000Z"}\n\n` +
  ': heartbeat\n\n'

const orderEventsRoute = createRoute({
  method: 'get',
  path: '/v1/orders/{id}/events',
  operationId: 'streamOrderEvents',
  tags: ['Orders'],
  summary: 'Follow one order’s status changes as server-sent events (its owner or an admin)',
  description:
    'Every change of the order’s status, as `event: status` with the event’s `id:`: first those recorded after `Last-Event-ID` (without it, the order’s whole history), then each as it commits, on whichever instance. A comment line every `SSE_HEARTBEAT_MS` (15 s) while nothing happens. At most `SSE_MAX_STREAMS_PER_USER` streams per user and `SSE_MAX_STREAMS` per instance: past that, 429 `too_many_streams`. Someone else’s order is a 404.',
  security: bearer,
  request: { params: OrderId, headers: LastEventId },
  responses: {
    200: eventStream('The order’s events', example(EXAMPLE_IDS.order)),
    ...problems('not_found', ...streamProblems),
  },
})

const allEventsRoute = createRoute({
  method: 'get',
  path: '/v1/admin/orders/events',
  operationId: 'streamAllOrderEvents',
  tags: ['Orders'],
  summary: 'Follow every order’s status changes as server-sent events (admin)',
  description:
    'Like an order’s stream, for every order. Without `Last-Event-ID` it starts with the next change; with it, after that event.',
  security: bearer,
  request: { headers: LastEventId },
  responses: {
    200: eventStream('Every order’s events', example(EXAMPLE_IDS.order)),
    ...problems('forbidden', ...streamProblems),
  },
})

/** What the order event routes use: the HTTP layer's services, the bus that wakes streams, and the bound on open streams. */
export interface OrderEventRouteServices extends HttpServices {
  readonly orderEvents: OrderEventsBus
  readonly streams: StreamGate
}

/** The order event streams: one order's (owner or admin) and every order's (admin). */
export function orderEventRoutes(services: OrderEventRouteServices) {
  const { orderEvents, streams, config, logger } = services
  const signedIn = authenticate(services)

  /** Opens a stream of `orderId`'s events (undefined: every order's) after `after` (undefined: from `start`). */
  const open = async (c: Context<AppEnv>, orderId: string | undefined, after: number | undefined, start: () => Promise<number>) => {
    let pump: ReturnType<typeof eventPump> | undefined
    const wake = () => pump?.wake()
    const lease = streams.acquire(c.get('principal').userId, wake)
    const db = c.get('scope').db
    let stream: { aborted: boolean } | undefined
    const ended = () => lease.closed || c.req.raw.signal.aborted || stream?.aborted === true
    let unsubscribe: (() => void) | undefined
    const end = () => {
      unsubscribe?.()
      lease.release()
    }
    let from: number
    try {
      // Subscribed before the record is first read: whatever commits after that read wakes the stream.
      unsubscribe = await orderEvents.subscribe(orderId, wake)
      from = after ?? (await start())
    } catch (err) {
      end()
      throw err
    }
    c.req.raw.signal.addEventListener('abort', wake)
    // Proxies that buffer answers (nginx) would hold the events back.
    c.header('X-Accel-Buffering', 'no')
    return streamSSE(c, async (sse) => {
      stream = sse
      sse.onAbort(wake)
      pump = eventPump({
        write: (t) => sse.write(t),
        read: (id) => eventsAfter(db, orderId, id),
        readIds: orderId === undefined ? (ids) => eventsWithIds(db, ids) : undefined,
        after: from,
        heartbeatMs: config.orderEvents.heartbeatMs,
        ended,
      })
      try {
        await sse.write(`retry: ${RETRY_MS}\n\n`)
        await pump.run()
      } catch (err) {
        // The client reconnects with the last id it has, to this instance or another.
        logger.warn('order event stream ended early', {
          error: err instanceof Error ? err.message : String(err),
          requestId: c.get('requestId'),
        })
      } finally {
        end()
      }
    })
  }
  const lastId = (header: string | undefined) => (header === undefined ? undefined : Number(header))

  return new OpenAPIHono<AppEnv>()
    .openapi({ ...orderEventsRoute, middleware: [signedIn] }, async (c) => {
      const { id } = c.req.valid('param')
      await ensureVisibleOrder(c.get('scope').db, id, c.get('principal'))
      return open(c, id.toLowerCase(), lastId(c.req.valid('header')['last-event-id']), async () => 0)
    })
    .openapi({ ...allEventsRoute, middleware: [signedIn, requireRole('admin')] }, async (c) =>
      open(c, undefined, lastId(c.req.valid('header')['last-event-id']), () => latestEventId(c.get('scope').db)),
    )
}
