import type { MiddlewareHandler } from 'hono'
import { CLOCK_SKEW_MS } from '../db/replicas.ts'
import type { AppEnv } from './context.ts'

/** The cookie, and the header for clients without cookies, that carry when a client last wrote (ms since the epoch). */
export const WRITTEN_AT_COOKIE = 'edgeshop-written-at'
export const WRITTEN_AT_HEADER = 'X-Written-At'

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])
const COOKIE = new RegExp(`(?:^|;\\s*)${WRITTEN_AT_COOKIE}=(\\d{1,16})(?:;|$)`)

/**
 * Read-your-writes over replicas that lag. The answer to a request that may
 * have written (any method but GET, HEAD and OPTIONS, answered below 400)
 * carries the time it was answered — after its transaction committed — as a
 * cookie and an `X-Written-At` header; a later read that sends either back
 * goes to a replica only once that replica has replayed every commit made
 * before that time, else to the primary ({@link Reads}). The cookie lives as
 * long as a healthy replica may lag: past that every healthy replica has the
 * write. A time in the future counts as now.
 *
 * @example
 * ```ts
 * app.use(readYourWrites({ maxLagMs: 2000 }))
 * const rows = await c.get('scope').read((db) => listOrders(db, principal, query), c.get('writtenAt'))
 * ```
 */
export function readYourWrites(opts: { maxLagMs: number; secureCookie: boolean }): MiddlewareHandler<AppEnv> {
  const lifeMs = opts.maxLagMs + CLOCK_SKEW_MS
  const maxAge = Math.ceil(lifeMs / 1000)
  const attributes = `Max-Age=${maxAge}; Path=/; HttpOnly; SameSite=Lax${opts.secureCookie ? '; Secure' : ''}`
  return async (c, next) => {
    const now = Date.now()
    const sent = c.req.header(WRITTEN_AT_HEADER) ?? COOKIE.exec(c.req.header('cookie') ?? '')?.[1]
    const at = sent === undefined || !/^\d{1,16}$/.test(sent) ? undefined : Math.min(Number(sent), now)
    c.set('writtenAt', at !== undefined && at > now - lifeMs ? at : undefined)
    await next()
    if (SAFE.has(c.req.method) || c.res.status >= 400) return
    const written = String(Date.now())
    c.res.headers.set(WRITTEN_AT_HEADER, written)
    c.res.headers.append('Set-Cookie', `${WRITTEN_AT_COOKIE}=${written}; ${attributes}`)
  }
}
