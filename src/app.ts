import { OpenAPIHono } from '@hono/zod-openapi'
import { accountsRoutes } from './features/accounts/routes.ts'
import { catalogRoutes, productReadLane } from './features/catalog/routes.ts'
import { jobRoutes } from './features/jobs/routes.ts'
import { orderRoutes } from './features/orders/routes.ts'
import { registerReference } from './features/system/reference.ts'
import { systemRoutes } from './features/system/routes.ts'
import type { AppEnv } from './http/context.ts'
import { type EarlyRoute, edge, plainAnswers, responseAnswers } from './http/edge.ts'
import { errorHandler, notFoundHandler } from './http/errors.ts'
import { corsFor } from './http/security.ts'
import { validationHook } from './http/validation.ts'
import type { Platform } from './platform.ts'

/**
 * The portable edgeshop application: middleware, routes and error handling,
 * built from a {@link Platform}. It runs unchanged on Workers, Bun and Node.
 *
 * @example
 * ```ts
 * const app = createApp(platform)
 * const res = await app.request('/healthz')
 * ```
 */
export function createApp(platform: Platform, opts: { earlyRoute?: boolean } = {}) {
  const { config, logger, metrics } = platform
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })

  const perRequest = platform.mode.database === 'hyperdrive'
  app.use(
    edge({
      record: platform.recordRequest,
      metrics,
      bodyLimitBytes: config.bodyLimitBytes,
      deps: perRequest ? (c) => platform.deps(c.executionCtx) : () => platform.deps(),
    }),
  )
  if (config.corsOrigins.length > 0) app.use(corsFor(config.corsOrigins))
  app.onError(errorHandler(logger))
  app.notFound(notFoundHandler(app))

  const routes = app
    .route('/', systemRoutes(platform))
    .route('/', accountsRoutes(platform))
    .route('/', catalogRoutes(platform))
    .route('/', orderRoutes(platform))
    .route('/', jobRoutes(platform))

  registerReference(app, platform)

  // The catalog's hottest read is answered before routing when L1 holds it;
  // everything else, and every miss, is routed. `fetch` is what Bun, Workers
  // and `app.request` call. A runtime that takes the early route itself,
  // before it builds a Request (Node), asks for `earlyRoute: false`, so that
  // what the early route declined is not looked at twice.
  if (opts.earlyRoute === false) return routes
  const early = productReadLane(platform, responseAnswers)
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
export function earlyRoute(platform: Platform): EarlyRoute {
  return productReadLane(platform, plainAnswers)
}

/** The type of the edgeshop app, for typed clients: `hc<AppType>(baseUrl)`. */
export type AppType = ReturnType<typeof createApp>
