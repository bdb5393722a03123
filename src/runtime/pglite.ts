import { PGlite } from '@electric-sql/pglite'
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm'
import { sql as q } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/pglite'
import { type Database, type DatabaseHandle, withDeadline } from '../db/database.ts'
import * as schema from '../db/schema.ts'

/**
 * Opens the embedded database: PostgreSQL compiled to WASM, running in this
 * process. With `dataDir` its files persist there; without it, it lives in
 * memory (tests). `loadDataDir` starts from a dump made by `dumpDataDir()`,
 * which skips initdb.
 *
 * One process only: PGlite is a single session, so queries queue inside it.
 *
 * @example
 * ```ts
 * const handle = await createEmbeddedDatabase({ dataDir: '.data/pglite' })
 * ```
 */
export async function createEmbeddedDatabase(opts: { dataDir?: string; loadDataDir?: Blob }): Promise<DatabaseHandle & { client: PGlite }> {
  const client = await PGlite.create(opts.dataDir, {
    extensions: { pg_trgm },
    ...(opts.loadDataDir ? { loadDataDir: opts.loadDataDir } : {}),
  })
  const db = drizzle({ client, schema }) as unknown as Database
  let closed = false
  return {
    kind: 'pglite',
    db,
    client,
    ping: async (timeoutMs) => {
      await withDeadline(db.execute(q`select 1`), timeoutMs, 'ping')
    },
    listen: async (channel, onMessage, onListen) => {
      const unlisten = await client.listen(channel, onMessage)
      onListen()
      return unlisten
    },
    close: async () => {
      if (closed) return
      closed = true
      await client.close()
    },
  }
}
