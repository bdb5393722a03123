import { createRoute, OpenAPIHono, type RouteConfigToTypedResponse, z } from '@hono/zod-openapi'
import type { Context } from 'hono'
import { authenticate, requireRole } from '../../http/auth.ts'
import type { AppEnv, HttpServices, RequestScope } from '../../http/context.ts'
import { jsonAnswer } from '../../http/edge.ts'
import { EXAMPLE_IDS } from '../../http/examples.ts'
import { idempotency } from '../../http/idempotency.ts'
import { json, jsonBody, problems } from '../../http/openapi.ts'
import { PageQuery } from '../../http/page.ts'
import type { Cache } from '../../infra/cache.ts'
import type { JobRef } from '../../infra/jobs/jobs.ts'
import { PRODUCTS, productKey } from '../catalog/index.ts'
import { CreateOrder, IdempotencyHeaders, Order, OrderId, OrderPage, PayOrder } from './schemas.ts'
import { type ChangedProduct, cancelOrder, checkout, fulfilOrder, getOrder, listOrders, payOrder } from './service.ts'

const bearer = [{ bearerAuth: [] }]
const authProblems = ['unauthorized', 'service_unavailable'] as const
const bodyProblems = ['validation_failed', 'invalid_json', 'unsupported_media_type'] as const
const idempotencyProblems = ['idempotency_key_missing', 'idempotency_key_reused', 'idempotency_request_in_progress'] as const
const orderExample = (status: 'pending_payment' | 'payment_processing', updatedAt: string) => ({
  id: EXAMPLE_IDS.order,
  status,
  items: [{ productId: EXAMPLE_IDS.product, sku: 'MUG-001', name: 'Enamel mug', unitPriceCents: 1200, quantity: 2, lineTotalCents: 2400 }],
  totalCents: 2400,
  currency: 'USD',
  createdAt: '2026-01-15T09:35:00.000Z',
  updatedAt,
  expiresAt: '2026-01-15T09:50:00.000Z',
})
const replayed = z.object({
  'Idempotent-Replayed': z
    .string()
    .optional()
    .openapi({ description: '`true` when this is the stored answer of an earlier request with the same key.' }),
})

const createOrderRoute = createRoute({
  method: 'post',
  path: '/v1/orders',
  operationId: 'createOrder',
  tags: ['Orders'],
  summary: 'Check out',
  description:
    'Reserves stock for every line atomically, all or nothing, and creates the order in `pending_payment`; unpaid, it expires after `ORDER_TTL_SECONDS`. Idempotent per user and `Idempotency-Key`: the same key and body replay the first answer; the same key with another body is 422; the same key while the first request runs is 409.',
  security: bearer,
  request: { headers: IdempotencyHeaders, body: jsonBody(CreateOrder, { items: [{ productId: EXAMPLE_IDS.product, quantity: 2 }] }) },
  responses: {
    201: {
      ...json(Order, 'The order, in pending_payment', orderExample('pending_payment', '2026-01-15T09:35:00.000Z')),
      headers: replayed.extend({ Location: z.string().openapi({ description: 'The order’s URL' }) }),
    },
    ...problems('insufficient_stock', 'unknown_product', ...idempotencyProblems, ...bodyProblems, ...authProblems),
  },
})

const listRoute = createRoute({
  method: 'get',
  path: '/v1/orders',
  operationId: 'listOrders',
  tags: ['Orders'],
  summary: 'The caller’s orders, newest first (an admin: all orders)',
  security: bearer,
  request: { query: PageQuery },
  responses: { 200: json(OrderPage, 'A page of orders'), ...problems('validation_failed', ...authProblems) },
})

const getRoute = createRoute({
  method: 'get',
  path: '/v1/orders/{id}',
  operationId: 'getOrder',
  tags: ['Orders'],
  summary: 'One order (its owner or an admin)',
  description: 'Someone else’s order is a 404: its existence is not revealed.',
  security: bearer,
  request: { params: OrderId },
  responses: { 200: json(Order, 'The order'), ...problems('not_found', ...authProblems) },
})

const payRoute = createRoute({
  method: 'post',
  path: '/v1/orders/{id}/pay',
  operationId: 'payOrder',
  tags: ['Orders'],
  summary: 'Pay an order (its owner)',
  description:
    'Moves the order to `payment_processing` and queues the capture, which runs in a background job: the order becomes `paid` (and a confirmation email is sent) or `payment_failed` (payable again). Idempotent like checkout.',
  security: bearer,
  request: { params: OrderId, headers: IdempotencyHeaders, body: jsonBody(PayOrder, { paymentToken: 'tok_ok' }) },
  responses: {
    202: {
      ...json(Order, 'The order, in payment_processing', orderExample('payment_processing', '2026-01-15T09:36:00.000Z')),
      headers: replayed,
    },
    ...problems('not_found', 'invalid_state', ...idempotencyProblems, ...bodyProblems, ...authProblems),
  },
})

const cancelRoute = createRoute({
  method: 'post',
  path: '/v1/orders/{id}/cancel',
  operationId: 'cancelOrder',
  tags: ['Orders'],
  summary: 'Cancel an unpaid order (its owner or an admin)',
  description: 'From `pending_payment` or `payment_failed`; the reserved stock is released, once.',
  security: bearer,
  request: { params: OrderId },
  responses: { 200: json(Order, 'The order, cancelled'), ...problems('not_found', 'invalid_state', ...authProblems) },
})

const fulfilRoute = createRoute({
  method: 'post',
  path: '/v1/orders/{id}/fulfil',
  operationId: 'fulfilOrder',
  tags: ['Orders'],
  summary: 'Mark a paid order fulfilled (admin)',
  security: bearer,
  request: { params: OrderId },
  responses: { 200: json(Order, 'The order, fulfilled'), ...problems('not_found', 'invalid_state', 'forbidden', ...authProblems) },
})

/** What the order routes use: the HTTP layer's services, the catalog's cache (to drop changed products) and the job dispatcher. */
export interface OrderRouteServices extends HttpServices {
  readonly cache: Cache
  dispatch(scope: RequestScope, jobs: JobRef[]): void
}

/** Checkout, the order state machine and the caller's orders. */
export function orderRoutes(services: OrderRouteServices) {
  const { config, cache } = services
  const signedIn = authenticate(services)
  const invalidate = (c: Context<AppEnv>, changed: ChangedProduct[]) => {
    if (changed.length === 0) return
    c.get('scope').waitUntil(
      Promise.all([...changed.map((p) => cache.invalidateEntity(productKey(p.id), p.version)), cache.invalidateCollection(PRODUCTS)]),
    )
  }

  return new OpenAPIHono<AppEnv>()
    .openapi({ ...createOrderRoute, middleware: [signedIn, idempotency()] }, async (c) => {
      const { order, jobs, changed } = await checkout(
        c.get('tx'),
        { userId: c.get('principal').userId, items: c.req.valid('json').items },
        { currency: config.storeCurrency, ttlSeconds: config.orderTtlSeconds },
      )
      c.get('afterCommit')(() => {
        services.dispatch(c.get('scope'), jobs)
        invalidate(c, changed)
      })
      return jsonAnswer(c, 201, order, { Location: `/v1/orders/${order.id}` }) satisfies RouteConfigToTypedResponse<typeof createOrderRoute>
    })
    .openapi({ ...listRoute, middleware: [signedIn] }, async (c) =>
      c.json(await c.get('scope').read((db) => listOrders(db, c.get('principal'), c.req.valid('query')), c.get('writtenAt')), 200),
    )
    .openapi({ ...getRoute, middleware: [signedIn] }, async (c) =>
      c.json(await c.get('scope').read((db) => getOrder(db, c.req.valid('param').id, c.get('principal')), c.get('writtenAt')), 200),
    )
    .openapi({ ...payRoute, middleware: [signedIn, idempotency()] }, async (c) => {
      const { order, jobs } = await payOrder(c.get('tx'), c.req.valid('param').id, c.get('principal'), c.req.valid('json').paymentToken)
      c.get('afterCommit')(() => services.dispatch(c.get('scope'), jobs))
      return jsonAnswer(c, 202, order) satisfies RouteConfigToTypedResponse<typeof payRoute>
    })
    .openapi({ ...cancelRoute, middleware: [signedIn] }, async (c) => {
      const { order, changed } = await cancelOrder(c.get('scope').db, c.req.valid('param').id, c.get('principal'))
      invalidate(c, changed)
      return c.json(order, 200)
    })
    .openapi({ ...fulfilRoute, middleware: [signedIn, requireRole('admin')] }, async (c) =>
      c.json(await fulfilOrder(c.get('scope').db, c.req.valid('param').id, c.get('principal')), 200),
    )
}
