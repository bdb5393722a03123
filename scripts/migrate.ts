/**
 * Applies the committed migrations (drizzle/) to the database at
 * DATABASE_URL: `./run db:migrate`, or `node scripts/migrate.ts` in the
 * production image. Safe to run from several places at once: an advisory
 * lock serialises them, and applied migrations are skipped.
 */
import { loadConfig } from '../src/config.ts'
import { createPostgresDatabase } from '../src/db/postgres.ts'
import { migrate } from '../src/runtime/migrate.ts'

// Only the database setting matters here; the service's other settings (secrets) need not be present.
const { config } = loadConfig({ DATABASE_URL: process.env.DATABASE_URL }, { runtime: 'node' })
if (!config.database.url) {
  process.stderr.write('DATABASE_URL is not set: the embedded database migrates itself at start\n')
  process.exit(2)
}
const started = Date.now()
const handle = createPostgresDatabase({ url: config.database.url, poolMax: 1, timeoutMs: 10_000, statementTimeoutMs: 600_000 })
try {
  await migrate(handle)
  process.stdout.write(`${JSON.stringify({ level: 'info', msg: 'migrations applied', durationMs: Date.now() - started })}\n`)
} catch (err) {
  process.stderr.write(
    `${JSON.stringify({ level: 'error', msg: 'migration failed', error: err instanceof Error ? err.message : String(err) })}\n`,
  )
  process.exitCode = 1
} finally {
  await handle.close()
}
