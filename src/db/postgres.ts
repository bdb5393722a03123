import { sql as q } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/postgres-js'
import postgres from 'postgres'
import { type Database, type DatabaseHandle, DatabaseUnavailableError, type PoolStats, withDeadline } from './database.ts'
import * as schema from './schema.ts'
import { spanStatement, spanTransaction } from './statement-spans.ts'

export interface PostgresOptions {
  url: string
  poolMax: number
  /** Bound on connecting and on waiting for a free connection. */
  timeoutMs: number
  /** Server-side bound on one statement; also bounds idle time inside a transaction. */
  statementTimeoutMs: number
  /** Workers (Hyperdrive): one short-lived client per request, no type fetching, no idle timer. */
  perRequest?: boolean
  /** The process exports traces: statements and transactions of traced work become spans (src/db/statement-spans.ts). */
  traced?: boolean
}

/** A postgres.js client as Drizzle uses it, with the pool's in-flight work counted and bounded. */
export type PostgresClient = postgres.Sql

/**
 * Opens Postgres through postgres.js with a bounded pool. Every query and
 * transaction is counted for `/metrics` (and is a span in traced work,
 * src/db/statement-spans.ts), and no caller waits longer than
 * `timeoutMs` for a connection, nor `timeoutMs + statementTimeoutMs` for a
 * statement's answer — also from a server that accepts and never answers:
 * past that it gets {@link DatabaseUnavailableError} (or a connection error),
 * which the app answers with 503.
 *
 * @example
 * ```ts
 * const handle = createPostgresDatabase({ url, poolMax: 10, timeoutMs: 3000, statementTimeoutMs: 10000 })
 * await handle.db.select().from(users)
 * ```
 */
export function createPostgresDatabase(opts: PostgresOptions): DatabaseHandle & { sql: PostgresClient } {
  const raw = postgres(opts.url, {
    max: opts.poolMax,
    connect_timeout: opts.timeoutMs / 1000,
    // A server that stops answering (a partition, a frozen primary) would hold a query until TCP gives up, minutes
    // later. A connection that has heard nothing for longer than the server takes to cancel a statement by itself,
    // and a little more, is taken for dead and destroyed: every statement on it fails (transactions' too, BEGIN and
    // COMMIT included), and the pool connects anew (patches/postgres@3.4.9.patch).
    stall_timeout: (opts.timeoutMs + opts.statementTimeoutMs) / 1000,
    idle_timeout: opts.perRequest ? 0 : 30,
    fetch_types: !opts.perRequest,
    prepare: true,
    // postgres.js waits before it reconnects after a failed connection, and the wait grows with every failure in
    // the pool up to 20 s: after an outage the pool would come back that late. Its curve, capped at 1 s.
    backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 1),
    onnotice: () => {},
    connection: {
      application_name: 'edgeshop',
      statement_timeout: opts.statementTimeoutMs,
      idle_in_transaction_session_timeout: opts.statementTimeoutMs,
    },
  })
  const stats: PoolStats = { max: opts.poolMax, queries: 0, queriesInFlight: 0, transactionsInFlight: 0, timeouts: 0 }
  const sql = instrument(raw, stats, opts.timeoutMs, opts.timeoutMs + opts.statementTimeoutMs, opts.traced === true)
  const db = drizzle({ client: sql, schema }) as unknown as Database

  return {
    kind: opts.perRequest ? 'hyperdrive' : 'postgres',
    db,
    sql,
    ping: async (timeoutMs) => {
      await withDeadline(db.execute(q`select 1`), timeoutMs, 'ping')
    },
    stats: () => ({ ...stats }),
    ...(opts.perRequest
      ? {}
      : {
          listen: async (channel: string, onMessage: (payload: string) => void, onListen: () => void) => {
            const { unlisten } = await raw.listen(channel, onMessage, onListen)
            return unlisten
          },
        }),
    close: () => raw.end({ timeout: 5 }),
  }
}

type Tracked = {
  resolve: (x: unknown) => void
  reject: (x: unknown) => void
  cancel(): Promise<void> | undefined
  /** Set by postgres.js once a connection has taken the query. */
  state?: unknown
}

function instrument(raw: postgres.Sql, stats: PoolStats, acquireMs: number, queryMs: number, traced: boolean): postgres.Sql {
  const track = <T extends object>(untraced: T): T => {
    const query = traced ? spanStatement(untraced) : untraced
    const tracked = query as unknown as Tracked
    const { resolve, reject } = tracked
    let done = false
    stats.queries++
    stats.queriesInFlight++
    // One timer per query, re-armed only for the rare query still unanswered when it fires.
    let timer = setTimeout(() => {
      if (done) return
      if (!tracked.state) {
        // No connection has taken it (none free, or none can connect): it waits no longer than a transaction does.
        // Cancelling it before it is sent takes it out of the queue and rejects it (57014, so 503).
        stats.timeouts++
        tracked.cancel()?.catch(() => {})
        return
      }
      // Sent: the server cancels it itself after statementTimeoutMs. Its caller waits no longer than that after the
      // acquire bound, whatever the connection does; a connection that went silent is destroyed (stall_timeout).
      timer = setTimeout(() => {
        if (done) return
        stats.timeouts++
        tracked.reject(new DatabaseUnavailableError(`no answer within ${queryMs} ms`))
      }, queryMs - acquireMs)
    }, acquireMs)
    const finish = () => {
      if (done) return
      done = true
      stats.queriesInFlight--
      clearTimeout(timer)
    }
    tracked.resolve = (x) => {
      finish()
      resolve(x)
    }
    tracked.reject = (x) => {
      finish()
      reject(x)
    }
    return query
  }

  const begin = (...args: unknown[]) => {
    const fn = args[args.length - 1] as (tx: postgres.TransactionSql) => unknown
    const mode = args.length > 1 ? [args[0] as string] : []
    let state: 'waiting' | 'running' | 'abandoned' = 'waiting'
    stats.transactionsInFlight++
    const run = (tx: postgres.TransactionSql) => {
      if (state === 'abandoned') throw new DatabaseUnavailableError('no connection became free in time')
      state = 'running'
      return fn(tx)
    }
    const rawBegin = (f: typeof run) => (raw.begin as (...a: unknown[]) => Promise<unknown>)(...mode, f)
    const work = traced ? spanTransaction(rawBegin, run) : rawBegin(run)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (state !== 'waiting') return
        state = 'abandoned'
        stats.timeouts++
        reject(new DatabaseUnavailableError(`no connection became free within ${acquireMs} ms`))
      }, acquireMs)
      work.then(resolve, reject).finally(() => {
        clearTimeout(timer)
        stats.transactionsInFlight--
      })
    })
  }

  return new Proxy(raw, {
    get(target, prop, receiver) {
      if (prop === 'unsafe') return (...args: Parameters<postgres.Sql['unsafe']>) => track(target.unsafe(...args))
      if (prop === 'begin') return begin
      return Reflect.get(target, prop, receiver)
    },
    apply(target, thisArg, args) {
      return track(Reflect.apply(target, thisArg, args) as object)
    },
  })
}
