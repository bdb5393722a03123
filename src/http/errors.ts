import type { Context, ErrorHandler, NotFoundHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { TrieRouter } from 'hono/router/trie-router'
import { AppError } from '../core/errors.ts'
import { isDatabaseUnavailable, isOutOfRange } from '../db/database.ts'
import type { Logger } from '../observability/logger.ts'
import { traceIdOf } from '../observability/tracing.ts'
import type { AppEnv } from './context.ts'
import { problemResponse } from './problem.ts'

/** Maps whatever was thrown to an {@link AppError}; anything unexpected becomes a bare 500. */
export function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err
  if (err instanceof HTTPException) {
    switch (err.status) {
      case 400:
        return /json/i.test(err.message)
          ? new AppError('invalid_json', 'The body could not be parsed as JSON')
          : new AppError('validation_failed', err.message)
      case 401:
        return new AppError('unauthorized')
      case 403:
        return new AppError('forbidden')
      case 404:
        return new AppError('not_found')
      case 413:
        return new AppError('payload_too_large')
      case 415:
        return new AppError('unsupported_media_type', 'Send the body as application/json')
      default:
        if (err.status >= 500) return new AppError('internal_error')
        return new AppError('validation_failed', err.message)
    }
  }
  if (isDatabaseUnavailable(err)) return new AppError('service_unavailable', 'The database is unavailable', { cause: err })
  // The request asked for more than a column holds (an order's total past 2^31 − 1 minor units): its transaction rolled back.
  if (isOutOfRange(err))
    return new AppError('validation_failed', 'A number in the request, or one computed from it such as an order total, is out of range', {
      cause: err,
    })
  return new AppError('internal_error', undefined, { cause: err })
}

/**
 * The one `onError`: every failure leaves as problem details. Unexpected
 * errors are logged with the request id and answered without any detail; a
 * database that is down is a 503, never a driver's message.
 */
export function errorHandler(logger: Logger): ErrorHandler<AppEnv> {
  return (err, c) => {
    const appErr = toAppError(err)
    if (appErr.code === 'internal_error') {
      logger.error('unhandled error', {
        requestId: c.get('requestId'),
        traceId: traceIdOf(),
        error: describe(err),
        stack: err instanceof Error ? err.stack : undefined,
      })
    } else if (appErr.code === 'service_unavailable' && appErr.cause !== undefined) {
      logger.warn('dependency unavailable', { requestId: c.get('requestId'), traceId: traceIdOf(), error: describe(err) })
    }
    return problemResponse(c as Context, appErr)
  }
}

function describe(err: unknown): string {
  const parts: string[] = []
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    parts.push(`${(e as Error).name ?? 'Error'}${typeof code === 'string' ? `[${code}]` : ''}: ${(e as Error).message ?? String(e)}`)
  }
  return parts.join(' <- ')
}

/**
 * Requests no route answers: 405 `method_not_allowed` with `Allow` when the
 * path exists for other methods, else 404 `not_found`, as problem details.
 * Here rather than in a middleware, so that only requests that miss pay for it.
 * The 405 is `hono/method-not-allowed`'s algorithm without its mount handling,
 * which would add 0.5 KiB to the Worker (docs/DECISIONS.md).
 */
export function notFoundHandler(app: { routes: readonly { method: string; path: string }[] }): NotFoundHandler<AppEnv> {
  let byPath: TrieRouter<string[]> | undefined
  const allowed = (path: string): Set<string> => {
    if (!byPath) {
      const methods = new Map<string, Set<string>>()
      for (const r of app.routes) {
        if (r.method === 'ALL' || r.method === 'HEAD') continue
        const set = methods.get(r.path) ?? new Set<string>()
        set.add(r.method)
        if (r.method === 'GET') set.add('HEAD')
        methods.set(r.path, set)
      }
      byPath = new TrieRouter<string[]>()
      for (const [p, set] of methods) byPath.add('ALL', p, [...set])
    }
    const out = new Set<string>()
    for (const [methods] of byPath.match('ALL', path)[0]) for (const m of methods) out.add(m)
    return out
  }
  return (c) => {
    const methods = allowed(c.req.path)
    if (methods.size > 0 && !methods.has(c.req.method)) {
      const allow = [...methods].join(', ')
      return problemResponse(c as Context, new AppError('method_not_allowed', `Use ${allow}`, { headers: { Allow: allow } }))
    }
    return problemResponse(c as Context, new AppError('not_found', `No route for ${c.req.method} ${c.req.path}`))
  }
}
