import type { OpenAPIHono } from '@hono/zod-openapi'
import type { AppEnv } from '../../http/context.ts'
import type { Platform } from '../../platform.ts'
import { renderDocsPage } from './docs-page.ts'

export const API_VERSION = '1.0.0'

const DESCRIPTION = `A commerce backend: accounts, a cached catalog, orders with atomic stock reservation and idempotent checkout, background jobs.

Errors are RFC 9457 problem details (\`application/problem+json\`) with a stable \`code\`; see the error codes at the end of this page. Every answer carries \`X-Request-Id\`.

Lists take \`limit\` (1 to 100, default 20) and an opaque \`cursor\`, and answer \`{ items, nextCursor }\`.`

/**
 * `GET /openapi.json` and `GET /docs`, built from the routes registered on
 * `app`. Both are generated once, on first request, and served from memory.
 */
export function registerReference(app: OpenAPIHono<AppEnv>, platform: Platform): void {
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: 'An access token from `/v1/auth/login`, `/v1/auth/signup` or `/v1/auth/refresh`.',
  })
  app.openAPIRegistry.registerComponent('securitySchemes', 'metricsToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'The value of `METRICS_TOKEN`.',
  })

  let document: string | undefined
  let page: string | undefined
  const build = () =>
    app.getOpenAPI31Document({
      openapi: '3.1.0',
      info: { title: 'edgeshop API', version: API_VERSION, description: DESCRIPTION },
      servers: [{ url: platform.config.publicUrl }],
    }) as unknown as Record<string, unknown>

  app.get('/openapi.json', (c) => {
    document ??= JSON.stringify(build())
    return c.body(document, 200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'public, max-age=300' })
  })
  app.get('/docs', (c) => {
    page ??= renderDocsPage(build())
    return c.html(page, 200, {
      'Cache-Control': 'public, max-age=300',
      'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    })
  })
}
