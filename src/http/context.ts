import type { Context } from 'hono'
import type { Config } from '../config.ts'
import type { Principal, TokenVerifier } from '../core/principal.ts'
import type { RequestScope } from '../core/scope.ts'
import type { Transaction } from '../db/database.ts'
import type { RateLimiter } from '../infra/ratelimit.ts'
import type { Logger } from '../observability/logger.ts'
import type { Counter, Metrics } from '../observability/metrics.ts'

/**
 * What the HTTP layer's middleware needs of the services: every feature's
 * routes get at least this (src/services.ts builds it once).
 */
export interface HttpServices {
  readonly config: Config
  readonly logger: Logger
  readonly limiter: RateLimiter
  /** Counts requests a rate limit refused: over the allowance, or the limiter unavailable and the route failing closed. */
  readonly rateLimitRefusals?: Counter<'rule' | 'reason'> | undefined
  readonly tokens: TokenVerifier
  /** The peer's address as the runtime's socket reports it; never taken from a header a client controls. */
  peerAddress(c: Context): string | undefined
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
    /** Set by `edge()`: the request's database and `waitUntil`. */
    scope: RequestScope
    /**
     * Set by `readYourWrites()`: when this client last wrote (ms since the epoch), from its cookie or header, while
     * a replica may not have replayed that write yet; undefined otherwise (and always without replicas).
     */
    writtenAt: number | undefined
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

export type { Config, Logger, Metrics, RequestScope }
