import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core'
import type * as schema from './schema.ts'

/** The Drizzle database every service receives; the same type over postgres.js and PGlite. */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>

/** What a request or a long-lived process holds: the database and how to check and close it. */
export interface DatabaseHandle {
  readonly kind: 'pglite' | 'postgres' | 'hyperdrive'
  readonly db: Database
  /** Resolves when the database answers `select 1` within `timeoutMs`; otherwise rejects with {@link DatabaseUnavailableError}. */
  ping(timeoutMs: number): Promise<void>
  /**
   * LISTEN on `channel` (Bun and Node: postgres.js on a connection of its own, reconnecting by itself; PGlite in
   * process): `onMessage` gets each NOTIFY payload sent by a committed transaction, `onListen` runs whenever the
   * listen (re)starts, after which notifications sent meanwhile may have been missed. Absent on Workers, where
   * no connection outlives its request. Resolves once listening; the function it gives stops it.
   */
  listen?(channel: string, onMessage: (payload: string) => void, onListen: () => void): Promise<() => Promise<void>>
  /** Pool figures for `/metrics`, where the driver keeps a pool. */
  stats?(): PoolStats
  close(): Promise<void>
}

export interface PoolStats {
  max: number
  /** Queries sent through the pool since start (outside transactions). */
  queries: number
  queriesInFlight: number
  transactionsInFlight: number
  timeouts: number
}

/** The database could not be reached or did not answer in time. Rendered as 503 `service_unavailable`. */
export class DatabaseUnavailableError extends Error {
  constructor(reason: string, opts?: { cause?: unknown }) {
    super(`database unavailable: ${reason}`, opts)
    this.name = 'DatabaseUnavailableError'
  }
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  // A connection that heard nothing from the server for too long while waiting for an answer (src/db/postgres.ts).
  'CONNECTION_STALLED',
])

const WORKERS_SOCKET_ERRORS =
  /connection attempt failed|network connection lost|socket (has been|was) closed|connection (terminated|refused|reset)/i

/**
 * True when an error means "the database is not there or not answering"
 * rather than "this query is wrong": connection failures, the server
 * shutting down or refusing connections (SQLSTATE 08xxx, 57P0x), out of
 * resources such as a full disk (53xxx), refusing writes because it is
 * read-only (25006: a standby, `default_transaction_read_only`), and
 * statements cancelled by `statement_timeout` (57014).
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DatabaseUnavailableError) return true
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') {
      if (CONNECTION_CODES.has(code)) return true
      if (/^(08...|57P0.|53...|57014|25006)$/.test(code)) return true
    }
    // Workers' sockets (cloudflare:sockets, Hyperdrive) fail with bare messages and no code.
    const msg = (e as { message?: unknown }).message
    if (typeof msg === 'string' && WORKERS_SOCKET_ERRORS.test(msg)) return true
  }
  return false
}

/** True when `err`, or an error it was caused by, carries one of these SQLSTATEs. */
function hasSqlState(err: unknown, ...codes: string[]): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && codes.includes(code)) return true
  }
  return false
}

/** True when the database could not write for want of disk space (SQLSTATE 53100). */
export function isDiskFull(err: unknown): boolean {
  return hasSqlState(err, '53100')
}

/** Rejects with {@link DatabaseUnavailableError} when `work` has not settled within `ms`. */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DatabaseUnavailableError(`${what} took longer than ${ms} ms`)), ms)
  })
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer))
}

/** True when an error is a unique-constraint violation (optionally of one named constraint). */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const x = e as { code?: unknown; constraint_name?: unknown; constraint?: unknown }
    if (x.code === '23505') return constraint === undefined || x.constraint_name === constraint || x.constraint === constraint
  }
  return false
}

/**
 * True when PostgreSQL refused a number as out of range for its column or
 * its arithmetic (SQLSTATE 22003): a value the request led to, such as an
 * order's total over what an integer column holds.
 */
export function isOutOfRange(err: unknown): boolean {
  return hasSqlState(err, '22003')
}

/** The rows of a raw `db.execute(sql…)`: postgres.js answers an array, PGlite `{ rows }`. */
export function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[]
}

/** A transaction inside `db.transaction()`; it has the same query API as the database. */
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0]

/** True for the errors a retried transaction can succeed after: serialization failures and deadlocks. */
export function isRetryableConflict(err: unknown): boolean {
  return hasSqlState(err, '40001', '40P01')
}

/**
 * A Postgres array literal (`{"a","b"}`) for a `$n::type[]` parameter. Sent
 * as text, it needs no array type information from the driver: postgres.js
 * without `fetch_types` (Workers, Hyperdrive) cannot serialise JS arrays.
 */
export function pgArray(values: readonly (string | number)[]): string {
  return `{${values.map((v) => (typeof v === 'number' ? String(v) : `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`)).join(',')}}`
}

/**
 * Runs a fixed statement with positional parameters (`$1`, `$2`, …) on the
 * driver under Drizzle, skipping Drizzle's query building: for the few
 * statements on the write path that run thousands of times a second, where
 * assembling a large `sql` template per call cost ~10% of a checkout's CPU
 * time. postgres.js prepares the text once per connection; PGlite runs it as
 * it is. Rows come back as the driver gives them: column names as in the
 * statement, and no date parsing (select no timestamps through here).
 *
 * @example
 * ```ts
 * const rows = await runStatement<{ id: string }>(tx, 'select id from products where sku = $1', [sku])
 * ```
 */
export function runStatement<T>(db: Database | Transaction, text: string, params: unknown[]): Promise<T[]> {
  const client = (db as unknown as { session: { client: unknown } }).session.client as {
    unsafe?: (text: string, params: unknown[], opts: { prepare: boolean }) => Promise<T[]> & { execute(): Promise<T[]> }
    query?: (text: string, params: unknown[]) => Promise<{ rows: T[] }>
  }
  // A postgres.js query is lazy until it is awaited; `execute()` hands it to the connection now, so statements
  // reach the database in the order they were called here, whenever the caller awaits them.
  if (typeof client.unsafe === 'function') return client.unsafe(text, params, { prepare: true }).execute()
  if (typeof client.query === 'function') return client.query(text, params).then((result) => result.rows)
  return Promise.reject(new Error('runStatement: the database driver is neither postgres.js nor PGlite'))
}
