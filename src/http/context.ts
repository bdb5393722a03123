import type { Config } from '../config.ts'
import type { Principal } from '../core/principal.ts'
import type { Database, DatabaseHandle, Transaction } from '../db/database.ts'
import type { Logger } from '../observability/logger.ts'
import type { Metrics } from '../observability/metrics.ts'

/** What one request may use. On Bun and Node this is one shared object; on Workers one per request. */
export interface Deps {
  /** The request's database; on Workers a client made on first use. */
  readonly db: Database
  readonly database: DatabaseHandle
  /** Keeps work alive after the response is sent (Workers' `waitUntil`; elsewhere the promise just runs). */
  waitUntil(work: Promise<unknown>): void
}

/** An answer as plain data: its status, body and final header record. */
export interface PlainAnswer {
  status: number
  body: string | null
  headers: Record<string, string>
}

/** Hono's environment for every edgeshop route. */
export interface AppEnv {
  Variables: {
    requestId: string
    deps: Deps
    /** Set by `authenticate()`. */
    principal: Principal
    /** Set by `idempotency()`: the transaction the request's effects and its stored answer share. */
    tx: Transaction
    /** Set by `idempotency()`: work to start once that transaction has committed (job hand-over, cache invalidation). */
    afterCommit: (work: () => void) => void
    /**
     * Set by `jsonAnswer()`: the answer as plain data, which `idempotency()`
     * stores instead of reading the Response back (which costs a copy of the
     * body, and on Node the fast way of sending it).
     */
    answer: PlainAnswer
  }
}

export type { Config, Logger, Metrics }
