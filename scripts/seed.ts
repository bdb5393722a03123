/**
 * `./run seed`: makes the database ready to try. Idempotent — run it as
 * often as you like.
 *
 * - the admin from ADMIN_EMAIL / ADMIN_PASSWORD (created, or reset to that password)
 * - a demo catalog: `./run seed --products 1000` (default 100; up to
 *   millions, in batches, with a progress bar; re-running continues after the
 *   products already there)
 *
 * It uses the same settings as the service: DATABASE_URL, or the embedded
 * database in DATA_DIR (stop the service first; the data directory is locked
 * to one process).
 */
import { loadConfig } from '../src/config.ts'
import { countUsers, ensureAdmin } from '../src/features/accounts/service.ts'
import { createLogger } from '../src/observability/logger.ts'
import { processPasswordHasher } from '../src/runtime/argon2.ts'
import { DataDirLockedError, openDatabase } from '../src/runtime/process.ts'
import { createServices } from '../src/services.ts'
import { highestDemo, insertDemoBatch } from './demo-catalog.ts'
import { progress } from './progress.ts'

const flag = process.argv.indexOf('--products')
const wanted = flag >= 0 ? Number(process.argv[flag + 1]) : 100
if (!Number.isInteger(wanted) || wanted < 0 || wanted > 50_000_000) {
  process.stderr.write('--products takes a whole number from 0 to 50,000,000\n')
  process.exit(2)
}

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

const { database, unlock } = await openDatabase(config, logger, { poolMax: 4 }).catch((err) => {
  if (!(err instanceof DataDirLockedError)) throw err
  process.stderr.write(
    `seed: the embedded database in ${err.dir} is in use by a running edgeshop (pid ${err.pid}): stop it first, or seed PostgreSQL with DATABASE_URL, or choose another DATA_DIR\n`,
  )
  process.exit(1)
})
try {
  const services = createServices(
    { logger, database, peerAddress: () => undefined, passwords: processPasswordHasher(config.passwordHash) },
    config,
  )
  if (config.admin) {
    const result = await ensureAdmin(services.accounts(services.scope()), config.admin)
    say(`admin ${config.admin.email}: ${result}`)
  } else {
    say('admin: skipped (set ADMIN_EMAIL and ADMIN_PASSWORD to create one)')
  }
  say(`users: ${await countUsers(database.db)}`)

  const have = await highestDemo(database.db)
  if (have >= wanted) {
    say(`demo products: ${have} already there`)
  } else {
    const bar = progress('demo products', wanted - have)
    const batch = 5000
    for (let from = have + 1; from <= wanted; from += batch) {
      const to = Math.min(wanted, from + batch - 1)
      await insertDemoBatch(database.db, from, to, config.storeCurrency)
      bar.tick(to - from + 1)
    }
    bar.done()
    say(`demo products: ${wanted}`)
  }
} finally {
  await database.close()
  unlock?.()
}
