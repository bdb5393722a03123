import { OpenAPIHono } from '@hono/zod-openapi'
import { bodyLimit } from 'hono/body-limit'
import { methodNotAllowed } from 'hono/method-not-allowed'
import { accountsRoutes } from './features/accounts/routes.ts'
import { catalogRoutes } from './features/catalog/routes.ts'
import { jobRoutes } from './features/jobs/routes.ts'
import { orderRoutes } from './features/orders/routes.ts'
import { registerReference } from './features/system/reference.ts'
import { systemRoutes } from './features/system/routes.ts'
import type { AppEnv } from './http/context.ts'
import { errorHandler, notFoundHandler } from './http/errors.ts'
import { observe } from './http/observe.ts'
import { AppError, problemResponse } from './http/problem.ts'
import { corsFor, securityHeaders } from './http/security.ts'
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
export function createApp(platform: Platform) {
  const { config, logger, metrics } = platform
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook })

  app.use(observe({ logger, metrics }))
  app.use(securityHeaders())
  if (config.corsOrigins.length > 0) app.use(corsFor(config.corsOrigins))
  app.use(
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) => {
        const res = problemResponse(c, new AppError('method_not_allowed', `Use ${methods.join(', ')}`))
        res.headers.set('Allow', methods.join(', '))
        return res
      },
    }),
  )
  app.use(
    bodyLimit({
      maxSize: config.bodyLimitBytes,
      onError: () => {
        throw new AppError('payload_too_large', `The body may be at most ${config.bodyLimitBytes} bytes`)
      },
    }),
  )
  const perRequest = platform.mode.database === 'hyperdrive'
  app.use(async function init(c, next) {
    c.set('deps', platform.deps(perRequest ? c.executionCtx : undefined))
    await next()
  })
  app.onError(errorHandler(logger))
  app.notFound(notFoundHandler)

  const routes = app
    .route('/', systemRoutes(platform))
    .route('/', accountsRoutes(platform))
    .route('/', catalogRoutes(platform))
    .route('/', orderRoutes(platform))
    .route('/', jobRoutes(platform))

  registerReference(app, platform)
  return routes
}

/** The type of the edgeshop app, for typed clients: `hc<AppType>(baseUrl)`. */
export type AppType = ReturnType<typeof createApp>
