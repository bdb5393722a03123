import type { Database, DatabaseHandle } from '../db/database.ts'

/** Where a read that may be served by a replica runs (src/db/replicas.ts). */
export type Reads = <T>(work: (db: Database) => Promise<T>, after?: number) => Promise<T>

/**
 * What one request works over: its database and a way to keep work alive
 * after the answer. On Bun and Node one object serves every request; on
 * Workers each request has its own (the database client is per request).
 */
export interface RequestScope {
  /** The request's database; on Workers a client made on first use. */
  readonly db: Database
  readonly database: DatabaseHandle
  /**
   * Runs a read that may go to a replica (catalog and list reads): one that has replayed every write committed
   * before `after` (ms since the epoch) and is within the lag bound, else the primary. Without replicas, `db`.
   */
  read: Reads
  /** Keeps work alive after the response is sent (Workers' `waitUntil`; elsewhere the promise just runs). */
  waitUntil(work: Promise<unknown>): void
}
