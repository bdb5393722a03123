import { migrate } from '../../src/db/migrate.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { type PostgresServer, startPostgres } from './postgres.ts'

/*
 * The servers a test run shares: one PostgreSQL (and, where needed, one
 * redis-server). Every global setup of the run asks for them; the first
 * starts them, the last to release stops them. Each user gets its own
 * database, so runtimes and test files never see each other's rows.
 */

interface Shared {
  pg: PostgresServer
  users: number
}

const KEY = Symbol.for('edgeshop.test.services')
type Holder = { [KEY]?: Promise<Shared> }

export interface Services {
  pg: PostgresServer
  /** Creates a database with every migration applied and returns its URL. */
  migratedDatabase(name: string): Promise<string>
  release(): Promise<void>
}

/** Creates a database on `pg` and applies the migrations to it. */
export async function createMigratedDatabase(pg: PostgresServer, name: string): Promise<string> {
  const url = await pg.createDatabase(name)
  const handle = createPostgresDatabase({ url, poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 60_000 })
  try {
    await migrate(handle)
  } finally {
    await handle.close()
  }
  return url
}

export async function acquireServices(): Promise<Services> {
  const holder = globalThis as Holder
  holder[KEY] ??= startPostgres().then((pg) => ({ pg, users: 0 }))
  const shared = await holder[KEY]
  shared.users++
  let released = false
  return {
    pg: shared.pg,
    migratedDatabase: (name) => createMigratedDatabase(shared.pg, name),
    async release() {
      if (released) return
      released = true
      if (--shared.users === 0) {
        delete holder[KEY]
        await shared.pg.stop()
      }
    },
  }
}
