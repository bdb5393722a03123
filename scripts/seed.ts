/**
 * `bun run seed`: makes the database ready to try. Idempotent — run it as
 * often as you like.
 *
 * - the admin from ADMIN_EMAIL / ADMIN_PASSWORD (created, or reset to that password)
 *
 * It uses the same settings as the service: DATABASE_URL, or the embedded
 * database in DATA_DIR (stop the service first; the data directory is locked
 * to one process).
 */
import { loadConfig } from '../src/config.ts'
import { countUsers, ensureAdmin } from '../src/features/accounts/service.ts'
import { createAccessTokens } from '../src/features/accounts/tokens.ts'
import { createLogger } from '../src/observability/logger.ts'
import { processPasswordHasher } from '../src/runtime/argon2.ts'
import { openDatabase } from '../src/runtime/process.ts'

// Only what seeding uses: the service's secrets need not be present.
const SEED_SETTINGS = [
  'DATABASE_URL',
  'DATA_DIR',
  'DATABASE_TIMEOUT_MS',
  'ADMIN_EMAIL',
  'ADMIN_PASSWORD',
  'PASSWORD_HASH',
  'STORE_CURRENCY',
]
const { config } = loadConfig(Object.fromEntries(SEED_SETTINGS.map((k) => [k, process.env[k]])), { runtime: 'node' })
const logger = createLogger({ level: 'warn' })
const say = (msg: string) => process.stdout.write(`${msg}\n`)

const { database, unlock } = await openDatabase(config, logger, { poolMax: 4 })
try {
  const passwords = processPasswordHasher(config.passwordHash)
  const tokens = createAccessTokens({ secret: config.jwt.secret, ttlSeconds: config.jwt.accessTtlSeconds })
  if (config.admin) {
    const result = await ensureAdmin(
      { db: database.db, passwords, tokens, refreshTtlSeconds: config.jwt.refreshTtlSeconds, logger },
      config.admin,
    )
    say(`admin ${config.admin.email}: ${result}`)
  } else {
    say('admin: skipped (set ADMIN_EMAIL and ADMIN_PASSWORD to create one)')
  }
  say(`users: ${await countUsers(database.db)}`)
} finally {
  await database.close()
  unlock?.()
}
