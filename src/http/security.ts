import type { MiddlewareHandler } from 'hono'
import { cors } from 'hono/cors'

/**
 * The security headers every API answer carries (OWASP REST cheat sheet): no
 * sniffing, no framing, no referrer, a CSP that loads nothing. The edge
 * middleware adds them; a route that serves a page (`/docs`) sets its own CSP,
 * which is kept.
 */
export const API_HEADERS: Readonly<Record<string, string>> = {
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'",
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
}

const EXPOSED_HEADERS = [
  'ETag',
  'Location',
  'Retry-After',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
  'Idempotent-Replayed',
  'X-Request-Id',
  // When this client last wrote, for a browser client that keeps it itself (src/http/read-your-writes.ts).
  'X-Written-At',
]

/**
 * What {@link corsFor} adds to the answer of a request that has no `Origin`:
 * the exposed headers, and `Vary: Origin` so that HTTP caches keep it apart
 * from answers to cross-origin requests. An answer made outside the
 * middleware (the catalog's read lane) adds the same when CORS is on.
 */
export const CORS_HEADERS_WITHOUT_ORIGIN: Readonly<Record<string, string>> = {
  'Access-Control-Expose-Headers': EXPOSED_HEADERS.join(','),
  Vary: 'Origin',
}

/** CORS for the configured origins only; other origins get no CORS headers. */
export function corsFor(origins: string[]): MiddlewareHandler {
  return cors({
    origin: origins,
    allowMethods: ['GET', 'HEAD', 'POST', 'PATCH', 'DELETE'],
    allowHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key', 'If-Match', 'If-None-Match', 'X-Request-Id', 'X-Written-At'],
    exposeHeaders: EXPOSED_HEADERS,
    maxAge: 600,
  })
}
