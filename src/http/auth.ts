import type { MiddlewareHandler } from 'hono'
import { AppError } from '../core/errors.ts'
import type { Principal, Role, TokenVerifier } from '../core/principal.ts'
import type { AppEnv } from './context.ts'

/**
 * Requires `Authorization: Bearer <access token>` and puts the verified
 * principal on the context as `principal`. Anything else is 401 with
 * `WWW-Authenticate: Bearer`, and the answer never says which check failed.
 *
 * @example
 * ```ts
 * createRoute({ ..., middleware: [authenticate(services)] })
 * ```
 */
export function authenticate(services: { readonly tokens: TokenVerifier }): MiddlewareHandler<AppEnv> {
  const { tokens } = services
  return async function authenticate(c, next) {
    c.set('principal', await bearerPrincipal(tokens, c.req.header('authorization')))
    await next()
  }
}

/**
 * The principal of an `Authorization` header's bearer token: 401
 * `unauthorized` for a missing or malformed header, or a token that does not
 * verify. What {@link authenticate} checks, for handlers where a token is optional.
 *
 * @example
 * ```ts
 * const principal = header === undefined ? undefined : await bearerPrincipal(services.tokens, header)
 * ```
 */
export async function bearerPrincipal(tokens: TokenVerifier, header: string | undefined): Promise<Principal> {
  const match = header?.match(/^Bearer[ ]+([^\s]+)\s*$/i)
  if (!match) throw new AppError('unauthorized', 'An access token is required: Authorization: Bearer <token>')
  return tokens.verify(match[1]!)
}

/**
 * After {@link authenticate}: 403 `forbidden` unless the caller has `role`.
 *
 * @example
 * ```ts
 * middleware: [authenticate(services), requireRole('admin')]
 * ```
 */
export function requireRole(role: Role): MiddlewareHandler<AppEnv> {
  return async function requireRole(c, next) {
    const principal = c.get('principal') as Principal | undefined
    if (!principal) throw new AppError('unauthorized')
    if (principal.role !== role) throw new AppError('forbidden', `This needs the ${role} role`)
    await next()
  }
}
