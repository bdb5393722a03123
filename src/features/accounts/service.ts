import { and, eq, gt, isNull, lt, or, sql } from 'drizzle-orm'
import { AppError } from '../../core/errors.ts'
import type { Role } from '../../core/principal.ts'
import type { Database } from '../../db/database.ts'
import { refreshTokens, users } from '../../db/schema.ts'
import { uuidv7 } from '../../lib/uuid.ts'
import type { Logger } from '../../observability/logger.ts'
import type { PasswordHasher } from './password.ts'
import { type AccessTokens, newRefreshToken, refreshTokenHash } from './tokens.ts'

/*
 * Accounts: signup, login, refresh-token rotation with reuse detection,
 * logout, and the configured admin. Every function takes what it needs;
 * none knows about HTTP.
 */

export interface AccountsService {
  db: Database
  passwords: PasswordHasher
  tokens: AccessTokens
  refreshTtlSeconds: number
  logger: Logger
}

/** A user as the API shows it. */
export interface User {
  id: string
  email: string
  name: string
  role: Role
  createdAt: string
}

export interface Session {
  user: User
  accessToken: string
  refreshToken: string
  expiresIn: number
}

type UserRow = typeof users.$inferSelect

export const normalizeEmail = (email: string) => email.trim().toLowerCase()

const toUser = (row: UserRow): User => ({
  id: row.id,
  email: row.email,
  name: row.name,
  role: row.role,
  createdAt: row.createdAt.toISOString(),
})

async function startSession(deps: AccountsService, db: Database, row: UserRow, familyId: string, now: Date): Promise<Session> {
  const refreshToken = newRefreshToken()
  await db.insert(refreshTokens).values({
    id: uuidv7(now.getTime()),
    familyId,
    userId: row.id,
    tokenHash: refreshTokenHash(refreshToken),
    createdAt: now,
    expiresAt: new Date(now.getTime() + deps.refreshTtlSeconds * 1000),
  })
  const access = await deps.tokens.sign({ id: row.id, role: row.role }, now.getTime())
  return { user: toUser(row), accessToken: access.token, refreshToken, expiresIn: access.expiresIn }
}

/** Creates a customer and logs them in. 409 `email_taken` when the email has an account. */
export async function signup(
  deps: AccountsService,
  input: { email: string; password: string; name: string },
  now = new Date(),
): Promise<Session> {
  const email = normalizeEmail(input.email)
  const passwordHash = await deps.passwords.hash(input.password)
  return deps.db.transaction(async (tx) => {
    const [row] = await tx
      .insert(users)
      .values({ id: uuidv7(now.getTime()), email, name: input.name.trim(), passwordHash, role: 'customer', createdAt: now, updatedAt: now })
      .onConflictDoNothing({ target: users.email })
      .returning()
    if (!row) throw new AppError('email_taken', 'An account with this email already exists')
    return startSession(deps, tx as unknown as Database, row, uuidv7(now.getTime()), now)
  })
}

/**
 * Checks the password and starts a new token family. An unknown email costs
 * the same hash computation as a wrong password and gets the same answer. A
 * hash made with outdated parameters is replaced by one made now.
 */
export async function login(deps: AccountsService, input: { email: string; password: string }, now = new Date()): Promise<Session> {
  const email = normalizeEmail(input.email)
  const [row] = await deps.db.select().from(users).where(eq(users.email, email)).limit(1)
  if (!row) {
    await deps.passwords.verifyNothing(input.password)
    throw new AppError('invalid_credentials', 'Email or password is wrong')
  }
  const check = await deps.passwords.verify(input.password, row.passwordHash)
  if (!check.ok) throw new AppError('invalid_credentials', 'Email or password is wrong')
  if (check.needsRehash) {
    try {
      const upgraded = await deps.passwords.hash(input.password)
      await deps.db.update(users).set({ passwordHash: upgraded, updatedAt: now }).where(eq(users.id, row.id))
    } catch (err) {
      deps.logger.warn('password hash upgrade failed', { userId: row.id, error: err instanceof Error ? err.message : String(err) })
    }
  }
  return startSession(deps, deps.db, row, uuidv7(now.getTime()), now)
}

/**
 * Rotates a refresh token. Claiming the token is one conditional UPDATE, so of
 * two concurrent refreshes exactly one wins. The loser — or anyone presenting
 * a token that was already rotated — revokes the whole family (the OAuth
 * security BCP's answer to a leaked refresh token: the server cannot tell the
 * thief from the owner, so both must log in again).
 */
export async function refresh(deps: AccountsService, token: string, now = new Date()): Promise<Session> {
  const hash = refreshTokenHash(token)
  const session = await deps.db.transaction(async (tx) => {
    const [claimed] = await tx
      .update(refreshTokens)
      .set({ usedAt: now })
      .where(
        and(
          eq(refreshTokens.tokenHash, hash),
          isNull(refreshTokens.usedAt),
          isNull(refreshTokens.revokedAt),
          gt(refreshTokens.expiresAt, now),
        ),
      )
      .returning({ familyId: refreshTokens.familyId, userId: refreshTokens.userId })
    if (!claimed) return undefined
    const [row] = await tx.select().from(users).where(eq(users.id, claimed.userId)).limit(1)
    if (!row) return undefined
    return startSession(deps, tx as unknown as Database, row, claimed.familyId, now)
  })
  if (session) return session

  const [known] = await deps.db
    .select({ familyId: refreshTokens.familyId, usedAt: refreshTokens.usedAt })
    .from(refreshTokens)
    .where(eq(refreshTokens.tokenHash, hash))
    .limit(1)
  if (known?.usedAt) {
    await revokeFamily(deps.db, known.familyId, now)
    deps.logger.warn('refresh token reused: family revoked', { familyId: known.familyId })
    throw new AppError('refresh_token_reused', 'This refresh token was already used; log in again')
  }
  throw new AppError('unauthorized', 'The refresh token is unknown, expired or revoked')
}

async function revokeFamily(db: Database, familyId: string, now: Date) {
  await db
    .update(refreshTokens)
    .set({ revokedAt: now })
    .where(and(eq(refreshTokens.familyId, familyId), isNull(refreshTokens.revokedAt)))
}

/** Revokes the family of a refresh token. Unknown tokens are ignored: logout never tells whether a token existed. */
export async function logout(deps: Pick<AccountsService, 'db'>, token: string, now = new Date()): Promise<void> {
  const hash = refreshTokenHash(token)
  const [known] = await deps.db
    .select({ familyId: refreshTokens.familyId })
    .from(refreshTokens)
    .where(eq(refreshTokens.tokenHash, hash))
    .limit(1)
  if (known) await revokeFamily(deps.db, known.familyId, now)
}

/** The caller's account. A token whose user no longer exists is a 401. */
export async function me(db: Database, userId: string): Promise<User> {
  const [row] = await db.select().from(users).where(eq(users.id, userId)).limit(1)
  if (!row) throw new AppError('unauthorized', 'The account of this token no longer exists')
  return toUser(row)
}

/**
 * Makes sure the configured admin exists with the configured password. An
 * account that already holds that email (someone who signed up with it
 * first) becomes the admin, its password is replaced and its sessions are
 * revoked, so nobody keeps a way in that the operator did not give.
 */
export async function ensureAdmin(
  deps: AccountsService,
  admin: { email: string; password: string },
  now = new Date(),
): Promise<'created' | 'updated' | 'unchanged'> {
  const email = normalizeEmail(admin.email)
  const [existing] = await deps.db.select().from(users).where(eq(users.email, email)).limit(1)
  if (!existing) {
    const passwordHash = await deps.passwords.hash(admin.password)
    const inserted = await deps.db
      .insert(users)
      .values({ id: uuidv7(now.getTime()), email, name: 'Administrator', passwordHash, role: 'admin', createdAt: now, updatedAt: now })
      .onConflictDoNothing({ target: users.email })
      .returning({ id: users.id })
    if (inserted.length > 0) return 'created'
    return ensureAdmin(deps, admin, now)
  }
  const check = await deps.passwords.verify(admin.password, existing.passwordHash).catch(() => ({ ok: false, needsRehash: false }))
  if (existing.role === 'admin' && check.ok && !check.needsRehash) return 'unchanged'
  const passwordHash = check.ok && !check.needsRehash ? existing.passwordHash : await deps.passwords.hash(admin.password)
  await deps.db.transaction(async (tx) => {
    await tx.update(users).set({ role: 'admin', passwordHash, updatedAt: now }).where(eq(users.id, existing.id))
    if (!check.ok) {
      await tx
        .update(refreshTokens)
        .set({ revokedAt: now })
        .where(and(eq(refreshTokens.userId, existing.id), isNull(refreshTokens.revokedAt)))
    }
  })
  return 'updated'
}

/** Deletes refresh tokens that can no longer be used: expired, or revoked more than a day ago. Part of the daily schedule. */
export async function purgeRefreshTokens(db: Database, now = new Date()): Promise<number> {
  const dayAgo = new Date(now.getTime() - 24 * 3600 * 1000)
  const deleted = await db
    .delete(refreshTokens)
    .where(or(lt(refreshTokens.expiresAt, now), lt(refreshTokens.revokedAt, dayAgo)))
    .returning({ id: refreshTokens.id })
  return deleted.length
}

/** Count of users, for the seed's report. */
export async function countUsers(db: Database): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(users)
  return row?.n ?? 0
}
