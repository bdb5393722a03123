import { describe, expect, it } from 'vitest'
import { AppError } from '../../src/core/errors.ts'
import { AUDIENCE, createAccessTokens, ISSUER, newRefreshToken, refreshTokenHash } from '../../src/features/accounts/tokens.ts'
import { sha256Hex } from '../../src/lib/bytes.ts'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { decodeJwt, forgeJwt } from '../contract/helpers.ts'

const OLD = 'the-previous-signing-secret-0123456789ab'
const NEW = 'the-current-signing-secret-0123456789abcd'
const user = { id: uuidv7(), role: 'customer' as const }

async function rejected(promise: Promise<unknown>) {
  const err = await promise.catch((e: unknown) => e)
  expect(err).toBeInstanceOf(AppError)
  expect((err as AppError).code).toBe('unauthorized')
}

describe('access tokens', () => {
  it('round-trips the principal', async () => {
    const tokens = createAccessTokens({ secret: NEW, ttlSeconds: 900 })
    const { token, expiresIn } = await tokens.sign(user)
    expect(expiresIn).toBe(900)
    expect(await tokens.verify(token)).toEqual({ userId: user.id, role: 'customer' })
    expect(decodeJwt(token).payload).toMatchObject({ iss: ISSUER, aud: AUDIENCE })
  })

  it('expires exactly after its lifetime (with 5 s of leeway for clock skew)', async () => {
    const tokens = createAccessTokens({ secret: NEW, ttlSeconds: 900 })
    const issued = Date.UTC(2026, 0, 1)
    const { token } = await tokens.sign(user, issued)
    expect((await tokens.verify(token, issued + 899_000)).userId).toBe(user.id)
    expect((await tokens.verify(token, issued + 904_000)).userId).toBe(user.id)
    await rejected(tokens.verify(token, issued + 905_000))
  })

  it('rotation: tokens signed with the previous secret stay valid, and stop once it is removed', async () => {
    const before = createAccessTokens({ secret: OLD, ttlSeconds: 900 })
    const oldToken = (await before.sign(user)).token
    const during = createAccessTokens({ secret: NEW, previousSecret: OLD, ttlSeconds: 900 })
    expect((await during.verify(oldToken)).userId).toBe(user.id)
    const newToken = (await during.sign(user)).token
    expect(decodeJwt(newToken).header.kid).not.toBe(decodeJwt(oldToken).header.kid)
    const after = createAccessTokens({ secret: NEW, ttlSeconds: 900 })
    await rejected(after.verify(oldToken))
    expect((await after.verify(newToken)).userId).toBe(user.id)
  })

  it('never puts the secret in the kid', async () => {
    const { token } = await createAccessTokens({ secret: NEW, ttlSeconds: 900 }).sign(user)
    expect(token).not.toContain(NEW)
    expect(String(decodeJwt(token).header.kid)).toMatch(/^[0-9a-f]{16}$/)
  })

  it('refuses a token whose kid is right but whose signature was made with another key', async () => {
    const tokens = createAccessTokens({ secret: NEW, ttlSeconds: 900 })
    const { header, payload } = decodeJwt((await tokens.sign(user)).token)
    await rejected(tokens.verify(await forgeJwt(header, payload, OLD)))
    expect((await tokens.verify(await forgeJwt(header, payload, NEW))).userId).toBe(user.id)
  })

  it('holds the header and claim rules the library leaves open: typ, crit, nbf, iat in the future, aud as a list', async () => {
    const tokens = createAccessTokens({ secret: NEW, ttlSeconds: 900 })
    const { header, payload } = decodeJwt((await tokens.sign(user)).token)
    const now = Math.floor(Date.now() / 1000)
    await rejected(tokens.verify(await forgeJwt({ ...header, typ: 'at+jwt' }, payload, NEW)))
    await rejected(tokens.verify(await forgeJwt({ ...header, crit: ['b64'], b64: true }, payload, NEW)))
    await rejected(tokens.verify(await forgeJwt(header, { ...payload, nbf: now + 60 }, NEW)))
    await rejected(tokens.verify(await forgeJwt(header, { ...payload, iat: now + 60 }, NEW)))
    await rejected(tokens.verify(await forgeJwt(header, { ...payload, iat: String(now) }, NEW)))
    await rejected(tokens.verify(`${(await forgeJwt(header, payload, NEW)).slice(0, -2)}+/`))
    const { typ: _, ...noTyp } = header
    expect((await tokens.verify(await forgeJwt(noTyp, { ...payload, aud: ['other', AUDIENCE] }, NEW))).userId).toBe(user.id)
  })

  it('refuses oversized and non-string input without throwing anything else', async () => {
    const tokens = createAccessTokens({ secret: NEW, ttlSeconds: 900 })
    await rejected(tokens.verify('a'.repeat(5000)))
    await rejected(tokens.verify(undefined as unknown as string))
    await rejected(tokens.verify('e30.e30.'))
    await rejected(tokens.verify('!!!.???.***'))
  })
})

describe('refresh tokens', () => {
  it('carry 256 random bits and are stored as a SHA-256 hash', async () => {
    const a = newRefreshToken()
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(newRefreshToken()).not.toBe(a)
    const hash = refreshTokenHash(a)
    expect(hash).toMatch(/^[0-9a-f]{64}$/)
    expect(hash).not.toContain(a)
  })

  it('hash with SHA-256 exactly (known answers, UTF-8 input)', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
    expect(sha256Hex('é')).toBe('4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c')
  })
})
