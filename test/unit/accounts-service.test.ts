import { eq } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../../src/core/errors.ts'
import { refreshTokens, users } from '../../src/db/schema.ts'
import { createPasswordHasher, workersPasswordAlgorithm } from '../../src/features/accounts/password.ts'
import { type AccountsService, ensureAdmin, login, me, purgeRefreshTokens, refresh, signup } from '../../src/features/accounts/service.ts'
import { createAccessTokens } from '../../src/features/accounts/tokens.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { processPasswordHasher } from '../../src/runtime/argon2.ts'
import { freshEmbeddedDatabase } from '../support/test-app.ts'

/* The accounts rules, on a real (embedded) PostgreSQL, without HTTP. */

let deps: AccountsService
let close: () => Promise<void>

beforeAll(async () => {
  const database = await freshEmbeddedDatabase()
  close = () => database.close()
  deps = {
    db: database.db,
    passwords: processPasswordHasher('argon2id'),
    tokens: createAccessTokens({ secret: 'service-test-secret-0123456789abcdef0', ttlSeconds: 900 }),
    refreshTtlSeconds: 3600,
    logger: createLogger({ level: 'silent' }),
  }
})
afterAll(() => close())

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof AppError ? e.code : String(e)),
  )

describe('accounts service', () => {
  it('stores the password only as a hash and the email lower-cased', async () => {
    const s = await signup(deps, { email: '  Grace@Example.TEST ', password: 'cobol is fine', name: ' Grace ' })
    const [row] = await deps.db.select().from(users).where(eq(users.id, s.user.id))
    expect(row!.email).toBe('grace@example.test')
    expect(row!.name).toBe('Grace')
    expect(row!.passwordHash).toMatch(/^\$argon2id\$/)
    expect(row!.passwordHash).not.toContain('cobol')
    const [token] = await deps.db.select().from(refreshTokens).where(eq(refreshTokens.userId, s.user.id))
    expect(token!.tokenHash).not.toBe(s.refreshToken)
  })

  it('upgrades a hash made with weaker parameters at the next successful login', async () => {
    const workers = { ...deps, passwords: createPasswordHasher({ preferred: workersPasswordAlgorithm() }) }
    const s = await signup(workers, { email: 'upgrade@example.test', password: 'made on workers', name: 'U' })
    const hashOf = async () => (await deps.db.select().from(users).where(eq(users.id, s.user.id)))[0]!.passwordHash
    expect(await hashOf()).toMatch(/^\$pbkdf2-sha256\$/)
    expect(await codeOf(login(deps, { email: 'upgrade@example.test', password: 'wrong one!' }))).toBe('invalid_credentials')
    expect(await hashOf()).toMatch(/^\$pbkdf2-sha256\$/)
    await login(deps, { email: 'upgrade@example.test', password: 'made on workers' })
    expect(await hashOf()).toMatch(/^\$argon2id\$/)
    expect(await codeOf(login(deps, { email: 'upgrade@example.test', password: 'made on workers' }))).toBe('ok')
  })

  it('concurrent refreshes of one token: one session, the rest reuse', async () => {
    const s = await signup(deps, { email: 'race@example.test', password: 'racing tokens', name: 'R' })
    const results = await Promise.all([1, 2, 3, 4].map(() => codeOf(refresh(deps, s.refreshToken))))
    expect(results.sort()).toEqual(['ok', 'refresh_token_reused', 'refresh_token_reused', 'refresh_token_reused'])
  })

  it('an expired refresh token is refused without counting as reuse', async () => {
    const s = await signup(deps, { email: 'expiry@example.test', password: 'tokens expire', name: 'E' })
    expect(await codeOf(refresh(deps, s.refreshToken, new Date(Date.now() + 3601_000)))).toBe('unauthorized')
  })

  it('a token for a deleted user is a 401 on /me and on refresh', async () => {
    const s = await signup(deps, { email: 'gone@example.test', password: 'soon deleted', name: 'G' })
    const second = await refresh(deps, s.refreshToken)
    await deps.db.delete(users).where(eq(users.id, s.user.id))
    expect(await codeOf(me(deps.db, s.user.id))).toBe('unauthorized')
    expect(await codeOf(refresh(deps, second.refreshToken))).toBe('unauthorized')
  })

  it('ensureAdmin creates the admin once, then leaves it alone', async () => {
    const admin = { email: 'Boss@Example.TEST', password: 'the admin password' }
    expect(await ensureAdmin(deps, admin)).toBe('created')
    expect(await ensureAdmin(deps, admin)).toBe('unchanged')
    const session = await login(deps, { email: 'boss@example.test', password: 'the admin password' })
    expect(session.user.role).toBe('admin')
  })

  it('ensureAdmin takes over an account that squatted the admin email, and ends its sessions', async () => {
    const squatter = await signup(deps, { email: 'owner@example.test', password: 'squatter password', name: 'Mallory' })
    expect(await ensureAdmin(deps, { email: 'owner@example.test', password: 'the real admin password' })).toBe('updated')
    expect(await codeOf(login(deps, { email: 'owner@example.test', password: 'squatter password' }))).toBe('invalid_credentials')
    expect(await codeOf(refresh(deps, squatter.refreshToken))).toBe('unauthorized')
    const admin = await login(deps, { email: 'owner@example.test', password: 'the real admin password' })
    expect(admin.user.role).toBe('admin')
  })

  it('the daily purge deletes expired and long-revoked refresh tokens only', async () => {
    const s = await signup(deps, { email: 'purge@example.test', password: 'purge me later', name: 'P' })
    const live = await refresh(deps, s.refreshToken)
    expect(await purgeRefreshTokens(deps.db, new Date())).toBe(0)
    const later = new Date(Date.now() + 3601_000)
    const purged = await purgeRefreshTokens(deps.db, later)
    expect(purged).toBeGreaterThanOrEqual(2)
    const left = await deps.db.select().from(refreshTokens).where(eq(refreshTokens.userId, live.user.id))
    expect(left).toHaveLength(0)
  })
})
