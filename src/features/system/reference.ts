import type { OpenAPIHono } from '@hono/zod-openapi'
import type { AppEnv, Config } from '../../http/context.ts'
import { renderDocsPage } from './docs-page.ts'

export const API_VERSION = '1.0.0'

const DESCRIPTION = `A commerce backend: accounts, a cached catalog, orders with atomic stock reservation and idempotent checkout, background jobs.

Errors are RFC 9457 problem details (\`application/problem+json\`) with a stable \`code\`; see the error codes at the end of this page. Every answer carries \`X-Request-Id\`.

Lists take \`limit\` (1 to 100, default 20) and an opaque \`cursor\`, and answer \`{ items, nextCursor }\`.

Reads are also served as GraphQL at \`POST /graphql\` (or \`GET /graphql?query=…\`), with the same bearer tokens, roles and error codes (in \`extensions.code\`); its schema is [/graphql/schema.graphql](/graphql/schema.graphql). Mutations stay here.

Every string a client sends is refused (400 \`validation_failed\`, naming the field) when it holds U+0000 or an unpaired UTF-16 surrogate: each string's \`pattern\` says so, and lengths count characters (code points).

The first five minutes, as the examples below tell them: with \`ADMIN_EMAIL\` and \`ADMIN_PASSWORD\` set, that admin exists once the service has started. Log in as them (\`POST /v1/auth/login\`) and send the \`accessToken\` as \`Authorization: Bearer …\`; create a product (\`POST /v1/products\`). Sign up a customer (\`POST /v1/auth/signup\`); with their token, check out (\`POST /v1/orders\` with a fresh \`Idempotency-Key\`) and pay with \`tok_ok\` (\`POST /v1/orders/{id}/pay\`, another key). The capture runs in the background: \`GET /v1/orders/{id}\` shows \`paid\` a moment later.`

/**
 * `GET /openapi.json` and `GET /docs`, built from the routes registered on
 * `app`. Both are generated once, on first request, and served from memory.
 */
export function registerReference(app: OpenAPIHono<AppEnv>, services: { readonly config: Config }): void {
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
  app.openAPIRegistry.registerComponent('securitySchemes', 'upstashSignature', {
    type: 'apiKey',
    in: 'header',
    name: 'Upstash-Signature',
    description: 'QStash’s signature (a JWT over the raw body and the URL), verified with the current and the next signing key.',
  })

  let document: string | undefined
  let page: string | undefined
  const build = () =>
    app.getOpenAPI31Document({
      openapi: '3.1.0',
      info: { title: 'edgeshop API', version: API_VERSION, description: DESCRIPTION },
      servers: [{ url: services.config.publicUrl }],
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
