import { OpenAPIHono } from '@hono/zod-openapi'
import { accountsRoutes } from './features/accounts/index.ts'
import { catalogRoutes, productReadLane } from './features/catalog/index.ts'
import { jobRoutes } from './features/jobs/index.ts'
import { orderRoutes } from './features/orders/index.ts'
import { registerReference, systemRoutes } from './features/system/index.ts'
import type { AppEnv } from './http/context.ts'
import { type EarlyRoute, edge, plainAnswers, responseAnswers } from './http/edge.ts'
import { errorHandler, notFoundHandler } from './http/errors.ts'
import { corsFor } from './http/security.ts'
import { validationHook } from './http/validation.ts'
import type { Services } from './services.ts'

/**
 * The portable edgeshop application: middleware, routes and error handling,
 * built from the {@link Services}. It runs unchanged on Workers, Bun and Node.
 *
 * @example
 * ```ts
 * const app = createApp(services)
 * const res = await app.request('/healthz')
 * ```
 */
export function createApp(services: Services, opts: { earlyRoute?: boolean } = {}) {
  const { config, logger, metrics } = services
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })

  const perRequest = services.mode.database === 'hyperdrive'
  app.use(
    edge({
      record: services.recordRequest,
      metrics,
      bodyLimitBytes: config.bodyLimitBytes,
      scope: perRequest ? (c) => services.scope(c.executionCtx) : () => services.scope(),
    }),
  )
  if (config.corsOrigins.length > 0) app.use(corsFor(config.corsOrigins))
  app.onError(errorHandler(logger))
  app.notFound(notFoundHandler(app))

  const routes = app
    .route('/', systemRoutes(services))
    .route('/', accountsRoutes(services))
    .route('/', catalogRoutes(services))
    .route('/', orderRoutes(services))
    .route('/', jobRoutes(services))

  registerReference(app, services)

  // The catalog's hottest read is answered before routing when L1 holds it;
  // everything else, and every miss, is routed. `fetch` is what Bun, Workers
  // and `app.request` call. A runtime that takes the early route itself,
  // before it builds a Request (Node), asks for `earlyRoute: false`, so that
  // what the early route declined is not looked at twice.
  if (opts.earlyRoute === false) return routes
  const early = productReadLane(services, responseAnswers)
  const routed = routes.fetch
  routes.fetch = (req, env, ctx) => early(req.method, req.url, (name) => req.headers.get(name)) ?? routed(req, env, ctx)
  return routes
}

/**
 * What is answered before routing: the catalog's read lane. The app's
 * `fetch` takes it first, answering Responses; a runtime that can call it
 * before it builds a `Request` (Node) takes this one, which answers plain
 * records.
 */
export function earlyRoute(services: Services): EarlyRoute {
  return productReadLane(services, plainAnswers)
}

/** The type of the edgeshop app, for typed clients: `hc<AppType>(baseUrl)`. */
export type AppType = ReturnType<typeof createApp>
