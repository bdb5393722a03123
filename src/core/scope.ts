import type { Database, DatabaseHandle } from '../db/database.ts'

/**
 * What one request works over: its database and a way to keep work alive
 * after the answer. On Bun and Node one object serves every request; on
 * Workers each request has its own (the database client is per request).
 */
export interface RequestScope {
  /** The request's database; on Workers a client made on first use. */
  readonly db: Database
  readonly database: DatabaseHandle
  /** Keeps work alive after the response is sent (Workers' `waitUntil`; elsewhere the promise just runs). */
  waitUntil(work: Promise<unknown>): void
}
