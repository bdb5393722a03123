import { OpenAPIHono } from '@hono/zod-openapi'
import { accountsRoutes } from './features/accounts/index.ts'
import { catalogRoutes, productReadLane } from './features/catalog/index.ts'
import { jobRoutes } from './features/jobs/index.ts'
import { orderEventRoutes, orderRoutes } from './features/orders/index.ts'
import { registerReference, systemRoutes } from './features/system/index.ts'
import { graphqlRoutes } from './graphql/index.ts'
import type { AppEnv } from './http/context.ts'
import { type AppLayer, type EarlyRoute, edge, plainAnswers, responseAnswers } from './http/edge.ts'
import { errorHandler, notFoundHandler } from './http/errors.ts'
import { readYourWrites } from './http/read-your-writes.ts'
import { CORS_HEADERS_WITHOUT_ORIGIN, corsFor } from './http/security.ts'
import { validationHook } from './http/validation.ts'
import type { Services } from './services.ts'

/**
 * The app-level middleware, in the order it runs, each with what the
 * catalog's read lane does in its place on an L1 hit ({@link AppLayer}).
 * Both `createApp` and the lane read this list: a middleware added here must
 * say what the lane does for it, or be `'routed'` (the lane then answers
 * nothing); one added with `app.use` instead fails the read lane's test.
 */
export function appLayers(services: Services): AppLayer[] {
  const { config, metrics } = services
  const perRequest = services.mode.database === 'hyperdrive'
  const layers: AppLayer[] = []
  if (services.requestTracing)
    layers.push({
      name: 'trace',
      handler: services.requestTracing,
      // The read lane's L1 hits make no span: a request that carries a trace context is routed, so a traced caller sees its span.
      early: { routes: (header) => header('traceparent') != null },
    })
  layers.push({
    name: 'edge',
    handler: edge({
      record: services.recordRequest,
      metrics,
      bodyLimitBytes: config.bodyLimitBytes,
      scope: perRequest ? (c) => services.scope(c.executionCtx) : () => services.scope(),
      traced: services.requestTracing !== undefined,
    }),
    // The lane gives the request its id and records the answer itself (`requestIdFrom`, `services.recordRequest`),
    // its answers carry the API headers already, a GET has no body to limit, and it answers without awaiting.
    early: {},
  })
  if (services.reads)
    layers.push({
      name: 'read-your-writes',
      handler: readYourWrites({ maxLagMs: config.database.replicaMaxLagMs, secureCookie: config.production }),
      // A GET only has its cookie read; an L1 copy is as fresh as this process's cache knows (src/infra/cache.ts).
      early: {},
    })
  if (config.corsOrigins.length > 0)
    layers.push({
      name: 'cors',
      handler: corsFor(config.corsOrigins),
      // What CORS adds to a request without an Origin; a request with one is routed through it.
      early: { headers: CORS_HEADERS_WITHOUT_ORIGIN, routes: (header) => header('origin') != null },
    })
  return layers
}

/**
 * The portable edgeshop application: middleware, routes and error handling,
 * built from the {@link Services}. It runs unchanged on Workers, Bun and Node.
 * `layers` (default {@link appLayers}) are its app-level middleware.
 *
 * @example
 * ```ts
 * const app = createApp(services)
 * const res = await app.request('/healthz')
 * ```
 */
export function createApp(services: Services, opts: { earlyRoute?: boolean; layers?: readonly AppLayer[] } = {}) {
  const layers = opts.layers ?? appLayers(services)
  const app = bareApp(services, layers)
  const routes = app
    .route('/', systemRoutes(services))
    .route('/', accountsRoutes(services))
    .route('/', catalogRoutes(services))
    .route('/', orderRoutes(services))
    .route('/', orderEventRoutes(services))
    .route('/', jobRoutes(services))
    .route('/', graphqlRoutes(services))

  registerReference(app, services)

  // The catalog's hottest read is answered before routing when L1 holds it;
  // everything else, and every miss, is routed. `fetch` is what Bun, Workers
  // and `app.request` call. A runtime that takes the early route itself,
  // before it builds a Request (Node), asks for `earlyRoute: false` and takes
  // `earlyRoute(services, layers)` with the same layers, so that what the
  // early route declined is not looked at twice.
  const early = opts.earlyRoute === false ? undefined : productReadLane(services, responseAnswers, layers)
  if (early === undefined) return routes
  const routed = routes.fetch
  routes.fetch = (req, env, ctx) => early(req.method, req.url, (name) => req.headers.get(name)) ?? routed(req, env, ctx)
  return routes
}

/**
 * The app of a `ROLE=worker` process: the same app-level middleware and
 * errors, and only `/healthz`, `/readyz` and `/metrics` (everything else is a
 * 404), for the probes and the scraper; the API is served by `api` processes.
 */
export function createOperationsApp(services: Services, layers: readonly AppLayer[] = appLayers(services)) {
  return bareApp(services, layers).route('/', systemRoutes(services))
}

/** An app with the app-level middleware, validation and error answers, and no routes yet. */
function bareApp(services: Services, layers: readonly AppLayer[]) {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
  for (const layer of layers) app.use(layer.handler)
  app.onError(errorHandler(services.logger))
  app.notFound(notFoundHandler(app))
  return app
}

/**
 * What is answered before routing: the catalog's read lane, in place of
 * `layers`, the app's. The app's `fetch` takes it first, answering Responses;
 * a runtime that can call it before it builds a `Request` (Node) takes this
 * one, which answers plain records. Undefined when a layer wants every
 * request routed.
 */
export function earlyRoute(services: Services, layers: readonly AppLayer[]): EarlyRoute | undefined {
  return productReadLane(services, plainAnswers, layers)
}

/** The type of the edgeshop app, for typed clients: `hc<AppType>(baseUrl)`. */
export type AppType = ReturnType<typeof createApp>
