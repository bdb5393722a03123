import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { migrate } from '../../src/runtime/migrate.ts'
import { type PostgresServer, startPostgres } from './postgres.ts'
import { type RedisServerHandle, startRedisServer } from './redis-server.ts'
import { startUpstashRest, type UpstashRestHandle } from './upstash-rest.ts'

/*
 * The servers a test run shares: one PostgreSQL and one redis-server. Every
 * global setup of the run asks for them; the first starts them, the last to
 * release stops them. Each user gets its own database, and its own Redis
 * database behind its own Upstash REST stand-in, so runtimes and test files
 * never see each other's data.
 */

interface Shared {
  pg: PostgresServer
  redis: RedisServerHandle
  users: number
  nextRedisDb: number
}

const KEY = Symbol.for('edgeshop.test.services')
type Holder = { [KEY]?: Promise<Shared> }

/** The token every stand-in of a test run accepts. */
export const UPSTASH_TEST_TOKEN = 'edgeshop-test-upstash-token'

export interface Services {
  pg: PostgresServer
  redis: RedisServerHandle
  /** Creates a database with every migration applied and returns its URL. */
  migratedDatabase(name: string): Promise<string>
  /** An Upstash REST stand-in on its own Redis database; closed on release. */
  upstash(): Promise<UpstashRestHandle>
  release(): Promise<void>
}

/** Applies every migration to the database at `url`. */
export async function applyMigrations(url: string): Promise<void> {
  const handle = createPostgresDatabase({ url, poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 60_000 })
  try {
    await migrate(handle)
  } finally {
    await handle.close()
  }
}

/** Creates a database on `pg` and applies the migrations to it. */
export async function createMigratedDatabase(pg: PostgresServer, name: string): Promise<string> {
  const url = await pg.createDatabase(name)
  await applyMigrations(url)
  return url
}

export async function acquireServices(): Promise<Services> {
  const holder = globalThis as Holder
  holder[KEY] ??= Promise.all([startPostgres(), startRedisServer({ databases: 64 })]).then(([pg, redis]) => ({
    pg,
    redis,
    users: 0,
    nextRedisDb: 1,
  }))
  const shared = await holder[KEY]
  shared.users++
  let released = false
  const stands: UpstashRestHandle[] = []
  return {
    pg: shared.pg,
    redis: shared.redis,
    migratedDatabase: (name) => createMigratedDatabase(shared.pg, name),
    async upstash() {
      const rest = await startUpstashRest({ redisPort: shared.redis.port, token: UPSTASH_TEST_TOKEN, db: shared.nextRedisDb++ % 64 })
      stands.push(rest)
      return rest
    },
    async release() {
      if (released) return
      released = true
      await Promise.all(stands.map((s) => s.close()))
      if (--shared.users === 0) {
        delete holder[KEY]
        await Promise.all([shared.pg.stop(), shared.redis.stop()])
      }
    },
  }
}
