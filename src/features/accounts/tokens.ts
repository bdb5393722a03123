import { Buffer } from 'node:buffer'
import { type JWTHeaderParameters, jwtVerify } from 'jose'
import { AppError } from '../../core/errors.ts'
import type { Principal, Role } from '../../core/principal.ts'
import { sha256Hex, utf8 } from '../../lib/bytes.ts'
import { isUuid } from '../../lib/uuid.ts'

/*
 * Access tokens are JWTs signed with HMAC-SHA256, and only that: the
 * algorithm is pinned, so `alg: none` or a switch to another algorithm is
 * refused before any key is touched. `exp`, `iat`, `iss`, `aud`, `sub` and
 * `role` are always issued and always required. The header's `kid` names the
 * secret (a hash of it, never the secret): tokens signed with
 * JWT_PREVIOUS_SECRET stay valid until they expire after a rotation. `jose`
 * verifies them (@upstash/qstash verifies its signatures with it, so it is in
 * every build already); they are signed here in four lines, which jose's
 * signer would make 0.7 KiB of the Worker (docs/DECISIONS.md).
 */

export const ISSUER = 'edgeshop'
export const AUDIENCE = 'edgeshop-api'
export type { Principal, Role }

export interface AccessTokens {
  sign(user: { id: string; role: Role }, nowMs?: number): Promise<{ token: string; expiresIn: number }>
  /** Throws 401 `unauthorized` for anything but a valid, unexpired token of ours. */
  verify(token: string, nowMs?: number): Promise<Principal>
}

const LEEWAY_SECONDS = 5
const MAX_TOKEN_LENGTH = 4096
const SEGMENT = /^[A-Za-z0-9_-]+$/
/** What jose checks: the algorithm, the issuer, the audience, that `exp`, `iat` and `sub` are there, `exp` and `nbf`. */
const checks = {
  algorithms: ['HS256'],
  issuer: ISSUER,
  audience: AUDIENCE,
  requiredClaims: ['exp', 'iat', 'sub'],
  clockTolerance: LEEWAY_SECONDS,
}

const invalid = () => new AppError('unauthorized', 'The access token is missing, malformed, expired or not valid here')

async function keyFor(secret: string) {
  const key = await crypto.subtle.importKey('raw', utf8(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify'])
  const kid = sha256Hex(`edgeshop-kid:${secret}`).slice(0, 16)
  return { kid, key }
}

const encodeJson = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/**
 * @example
 * ```ts
 * const tokens = createAccessTokens({ secret, ttlSeconds: 900 })
 * const { token } = await tokens.sign({ id: user.id, role: 'customer' })
 * const principal = await tokens.verify(token)
 * ```
 */
/** How many verified tokens are remembered per process (a few hundred bytes each). */
const VERIFIED_MAX = 4096

export function createAccessTokens(opts: { secret: string; previousSecret?: string | undefined; ttlSeconds: number }): AccessTokens {
  const current = keyFor(opts.secret)
  const all = Promise.all([current, ...(opts.previousSecret ? [keyFor(opts.previousSecret)] : [])]).then(
    (keys) => new Map(keys.map((k) => [k.kid, k.key])),
  )

  // Tokens already verified, until they expire: a client sends the same token with every request for its
  // lifetime, and checking its signature again (an asynchronous WebCrypto call) was ~10% of a checkout's CPU
  // time. Keyed by the whole token, signature included, so only the identical string is trusted; bounded,
  // oldest first out.
  const verified = new Map<string, { principal: Principal; exp: number }>()

  // The header checks jose leaves to us: `typ` may be absent but is never anything else, no `crit` extension
  // is honoured (jose would honour `b64`), and `kid` picks the secret.
  const keyOf = async (header: JWTHeaderParameters) => {
    if ((header.typ !== undefined && header.typ !== 'JWT') || header.crit !== undefined) throw invalid()
    const key = typeof header.kid === 'string' ? (await all).get(header.kid) : undefined
    if (!key) throw invalid()
    return key
  }

  return {
    async sign(user, nowMs = Date.now()) {
      const { kid, key } = await current
      const iat = Math.floor(nowMs / 1000)
      const header = encodeJson({ alg: 'HS256', typ: 'JWT', kid })
      const payload = encodeJson({ iss: ISSUER, aud: AUDIENCE, sub: user.id, role: user.role, iat, exp: iat + opts.ttlSeconds })
      const signature = Buffer.from(await crypto.subtle.sign('HMAC', key, utf8(`${header}.${payload}`)))
      return { token: `${header}.${payload}.${signature.toString('base64url')}`, expiresIn: opts.ttlSeconds }
    },

    async verify(token, nowMs = Date.now()) {
      if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) throw invalid()
      const known = verified.get(token)
      if (known !== undefined) {
        if (nowMs / 1000 < known.exp + LEEWAY_SECONDS) return known.principal
        verified.delete(token)
        throw invalid()
      }
      // Every segment in the URL-safe alphabet, unpadded: jose's decoders differ by runtime in what else they let through.
      const parts = token.split('.')
      if (parts.length !== 3 || !parts.every((p) => SEGMENT.test(p))) throw invalid()
      const claims = await jwtVerify(token, keyOf, { ...checks, currentDate: new Date(nowMs) }).then(
        (verified) => verified.payload,
        () => {
          throw invalid()
        },
      )
      // What jose leaves to the caller: an `iat` in the future, and our own claims.
      const { exp, iat, sub, role } = claims
      if (exp === undefined || iat === undefined || iat > nowMs / 1000 + LEEWAY_SECONDS) throw invalid()
      if (typeof sub !== 'string' || !isUuid(sub)) throw invalid()
      if (role !== 'customer' && role !== 'admin') throw invalid()
      const principal: Principal = Object.freeze({ userId: sub, role })
      if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value!)
      verified.set(token, { principal, exp })
      return principal
    },
  }
}

/** A new refresh token: 256 random bits, URL-safe. Only its hash is stored. */
export function newRefreshToken(): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(32)).buffer).toString('base64url')
}

/** What the database keeps of a refresh token. */
export const refreshTokenHash = (token: string) => sha256Hex(token)
