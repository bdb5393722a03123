import { createRoute, OpenAPIHono, type RouteConfigToTypedResponse, z } from '@hono/zod-openapi'
import type { Context, TypedResponse } from 'hono'
import { AppError } from '../../core/errors.ts'
import { authenticate, requireRole } from '../../http/auth.ts'
import type { AppEnv, HttpServices, RequestScope } from '../../http/context.ts'
import {
  type AnswerForm,
  type AppLayer,
  type EarlyRoute,
  earlyPartOf,
  finalAnswer,
  type JsonAnswer,
  plainAnswers,
  type RecordRequest,
  requestIdFrom,
} from '../../http/edge.ts'
import { EXAMPLE_IDS, EXAMPLE_TIME } from '../../http/examples.ts'
import { json, jsonBody, problems } from '../../http/openapi.ts'
import { API_HEADERS } from '../../http/security.ts'
import { text } from '../../http/text.ts'
import type { Cache, Cached } from '../../infra/cache.ts'
import { ifMatchVersions, noneMatch, PUBLIC_CACHE_CONTROL } from '../../lib/http-cache.ts'
import { isUuid } from '../../lib/uuid.ts'
import { CreateProduct, ListQuery, Product, ProductId, ProductPage, UpdateProduct } from './schemas.ts'
import {
  archiveProduct,
  type CatalogService,
  createProduct,
  listPage,
  productAnswer,
  productJson,
  productKey,
  updateProduct,
} from './service.ts'

const cacheable = z.object({
  ETag: z.string().openapi({ description: 'The representation’s version; send it back in `If-None-Match`.' }),
  'Cache-Control': z.string().openapi({ description: PUBLIC_CACHE_CONTROL }),
})
const notModified = { description: 'Not modified: the `If-None-Match` tag is current', headers: cacheable }
const admin = [{ bearerAuth: [] }]
const open: [] = []
const newProduct = {
  sku: 'MUG-001',
  name: 'Enamel mug',
  description: 'Holds 350 ml.',
  priceCents: 1200,
  stock: 100,
  category: 'kitchen',
}
const productExample = {
  id: EXAMPLE_IDS.product,
  ...newProduct,
  currency: 'USD',
  active: true,
  version: 1,
  createdAt: EXAMPLE_TIME,
  updatedAt: EXAMPLE_TIME,
}
const adminProblems = ['unauthorized', 'forbidden', 'service_unavailable'] as const
const bodyProblems = ['validation_failed', 'invalid_json', 'unsupported_media_type'] as const

const listRoute = createRoute({
  method: 'get',
  path: '/v1/products',
  operationId: 'listProducts',
  tags: ['Catalog'],
  summary: 'List active products, newest first',
  description:
    'Keyset pages: the cost of a page does not depend on its depth. Served from the cache; `ETag` and `Cache-Control` let HTTP caches keep it.',
  security: open,
  request: { query: ListQuery },
  responses: {
    200: { ...json(ProductPage, 'A page of products'), headers: cacheable },
    304: notModified,
    ...problems('validation_failed', 'service_unavailable'),
  },
})

const getRoute = createRoute({
  method: 'get',
  path: '/v1/products/{id}',
  operationId: 'getProduct',
  tags: ['Catalog'],
  summary: 'One product',
  description: 'Unknown and archived products are 404. Served from the cache.',
  security: open,
  // The hottest route: the id is checked by hand (`productAnswer` treats a non-UUID as unknown)
  // instead of by a validator layer, which cost ~7% of its CPU time (docs/BENCHMARKS.md).
  parameters: [
    {
      name: 'id',
      in: 'path',
      required: true,
      description: 'An id that is not a UUID is simply unknown (404).',
      schema: { type: 'string', format: 'uuid' },
    },
  ],
  responses: {
    200: { ...json(Product, 'The product'), headers: cacheable },
    304: notModified,
    ...problems('not_found', 'service_unavailable'),
  },
})

const createProductRoute = createRoute({
  method: 'post',
  path: '/v1/products',
  operationId: 'createProduct',
  tags: ['Catalog'],
  summary: 'Create a product (admin)',
  security: admin,
  request: { body: jsonBody(CreateProduct, newProduct) },
  responses: {
    201: {
      ...json(Product, 'The new product', productExample),
      headers: z.object({ Location: z.string().openapi({ description: 'The product’s URL' }) }),
    },
    ...problems('sku_taken', ...bodyProblems, ...adminProblems),
  },
})

const updateRoute = createRoute({
  method: 'patch',
  path: '/v1/products/{id}',
  operationId: 'updateProduct',
  tags: ['Catalog'],
  summary: 'Change a product (admin)',
  description:
    'With `If-Match: "<version>"` the change applies only if the product is still at that version (412 `version_mismatch` otherwise, with the current `ETag`). Setting `active: true` restores an archived product.',
  security: admin,
  request: {
    params: ProductId,
    headers: z.object({ 'if-match': text({ description: '`"<version>"` of the product you read.' }).optional() }),
    body: jsonBody(UpdateProduct),
  },
  responses: {
    200: json(Product, 'The changed product'),
    ...problems('not_found', 'version_mismatch', 'sku_taken', ...bodyProblems, ...adminProblems),
  },
})

const archiveRoute = createRoute({
  method: 'delete',
  path: '/v1/products/{id}',
  operationId: 'archiveProduct',
  tags: ['Catalog'],
  summary: 'Archive a product (admin)',
  description: 'The product is no longer listed or orderable; past orders keep it. Archiving an archived product is a 204 again.',
  security: admin,
  request: { params: ProductId },
  responses: { 204: { description: 'Archived' }, ...problems('not_found', ...adminProblems) },
})

/**
 * The headers of cached answers but the request id, prepared in a lane's form
 * once per ETag: each answer copies one set and adds its request id. A
 * product's tag is its version, so a few sets serve the whole catalog; list
 * pages' tags are hashes, so the sets are dropped when there are many.
 */
function cachedHeaders<Base>(form: AnswerForm<Base, unknown>, extra: Readonly<Record<string, string>>) {
  const found = { ...API_HEADERS, 'Content-Type': 'application/json', 'Cache-Control': PUBLIC_CACHE_CONTROL, ...extra }
  const notModified = { ...API_HEADERS, 'Cache-Control': PUBLIC_CACHE_CONTROL, ...extra }
  const byTag = new Map<string, { found: Base; notModified: Base }>()
  return (etag: string) => {
    let prepared = byTag.get(etag)
    if (prepared === undefined) {
      if (byTag.size >= 256) byTag.clear()
      prepared = { found: form.prepare({ ...found, ETag: etag }), notModified: form.prepare({ ...notModified, ETag: etag }) }
      byTag.set(etag, prepared)
    }
    return prepared
  }
}
const routedHeaders = cachedHeaders(plainAnswers, {})

/** The answer of cached bytes, headers final (the hot path): 304 when the client's tag is current. */
function cachedAnswer<Base, Answer>(
  form: AnswerForm<Base, Answer>,
  headers: (etag: string) => { found: Base; notModified: Base },
  cached: Cached,
  ifNoneMatch: string | null | undefined,
  requestId: string,
): Answer {
  const prepared = headers(cached.etag)
  return noneMatch(ifNoneMatch ?? undefined, cached.etag)
    ? form.make(304, null, prepared.notModified, requestId)
    : form.make(200, cached.body, prepared.found, requestId)
}
/**
 * A cached answer as its route declares it: the JSON of `T`, or a 304 without
 * a body. A route with a bodiless answer accepts any Response from its
 * handler, so the handlers say `satisfies RouteConfigToTypedResponse<…>`:
 * tsc holds `T` to the route's schema.
 */
type CachedAnswer<T> = JsonAnswer<T, 200> | (Response & TypedResponse<Record<never, never>, 304, string>)
/** The routed answer of cached bytes, which the service made from a `T`. */
const answer = <T>(c: Context<AppEnv>, cached: Cached) =>
  finalAnswer(cachedAnswer(plainAnswers, routedHeaders, cached, c.req.header('if-none-match'), c.get('requestId'))) as CachedAnswer<T>
type ProductJson = ReturnType<typeof productJson>
type ProductPageJson = { items: ProductJson[]; nextCursor: string | null }

const PRODUCT_PATH = '/v1/products/'
const PRODUCT_ROUTE = '/v1/products/:id'

/**
 * `GET /v1/products/{id}` answered before routing when this process holds
 * the product fresh in L1: the catalog's hottest read, and an answer that is
 * nothing but cached bytes. It answers exactly what the routed handler would
 * (the same bytes, headers and 304s, a request id, a log line, the metrics)
 * without the router, the context object and the middleware promises, which
 * cost more than the answer itself (docs/bench/HISTORY.md). In place of the
 * app's middleware it does what `layers` declare ({@link AppLayer}); with a
 * layer that wants every request routed there is no lane (undefined).
 * Everything else — a miss, an unknown id, HEAD, any other spelling of the
 * path, a request a layer must see (one with an `Origin` when CORS is on) —
 * is left to the router, which loads, counts the miss and handles errors.
 *
 * @example
 * ```ts
 * const lane = productReadLane(services, responseAnswers, appLayers(services))
 * const res = lane?.('GET', '/v1/products/0190…', (name) => req.headers.get(name)) ?? routed(req)
 * ```
 */
export function productReadLane<Base, Answer extends { status: number }>(
  services: Pick<CatalogRouteServices, 'config' | 'cache' | 'recordRequest'>,
  form: AnswerForm<Base, Answer>,
  layers: readonly AppLayer[],
): EarlyRoute<Answer> | undefined {
  // What the app's layers would add to the answer, and the requests one of them must see itself.
  const part = earlyPartOf(layers)
  if (part === undefined) return undefined
  const headers = cachedHeaders(form, part.headers ?? {})
  const routed = part.routes
  const { cache, recordRequest } = services
  return (method, target, header) => {
    if (method !== 'GET') return undefined
    // A path, or an absolute URL whose path starts at the first '/' after the authority.
    const path = target.charCodeAt(0) === 47 ? 0 : target.indexOf('/', target.indexOf('//') + 2)
    if (path < 0 || !target.startsWith(PRODUCT_PATH, path)) return undefined
    const idAt = path + PRODUCT_PATH.length
    const query = target.indexOf('?', idAt)
    const id = query < 0 ? target.slice(idAt) : target.slice(idAt, query)
    if (!isUuid(id) || routed?.(header)) return undefined
    const start = performance.now()
    const cached = cache.peek(productKey(id))
    if (cached === undefined) return undefined
    const requestId = requestIdFrom(header('x-request-id'))
    const answer = cachedAnswer(form, headers, cached, header('if-none-match'), requestId)
    recordRequest?.('GET', PRODUCT_ROUTE, answer.status, requestId, start)
    return answer
  }
}

/** What the catalog routes use: the HTTP layer's services, the catalog service and its cache, the request recorder. */
export interface CatalogRouteServices extends HttpServices {
  readonly cache: Cache
  readonly recordRequest: RecordRequest | undefined
  catalog(scope: RequestScope): CatalogService
}

/** The public catalog and its admin routes. */
export function catalogRoutes(services: CatalogRouteServices) {
  const catalog = (c: Context<AppEnv>) => services.catalog(c.get('scope'))
  const adminOnly = [authenticate(services), requireRole('admin')]

  return new OpenAPIHono<AppEnv>()
    .openapi(
      listRoute,
      async (c) =>
        answer<ProductPageJson>(
          c,
          await listPage(catalog(c), c.req.valid('query'), c.get('writtenAt')),
        ) satisfies RouteConfigToTypedResponse<typeof listRoute>,
    )
    .openapi(getRoute, async (c) => {
      const cached = await productAnswer(catalog(c), c.req.param('id') ?? '', c.get('writtenAt'))
      if (!cached) throw new AppError('not_found', 'No product with this id')
      return answer<ProductJson>(c, cached) satisfies RouteConfigToTypedResponse<typeof getRoute>
    })
    .openapi({ ...createProductRoute, middleware: adminOnly }, async (c) => {
      const row = await createProduct(catalog(c), c.req.valid('json'))
      return c.json(productJson(row), 201, { Location: `/v1/products/${row.id}`, ETag: `"${row.version}"`, 'Cache-Control': 'no-store' })
    })
    .openapi({ ...updateRoute, middleware: adminOnly }, async (c) => {
      const row = await updateProduct(catalog(c), c.req.valid('param').id, c.req.valid('json'), ifMatchVersions(c.req.header('if-match')))
      return c.json(productJson(row), 200, { ETag: `"${row.version}"`, 'Cache-Control': 'no-store' })
    })
    .openapi({ ...archiveRoute, middleware: adminOnly }, async (c) => {
      await archiveProduct(catalog(c), c.req.valid('param').id)
      return c.body(null, 204)
    })
}
