import { Redis, type RedisConfigNodejs } from '@upstash/redis'
import type { Context, MiddlewareHandler } from 'hono'
import type { Config } from './config.ts'
import type { RequestScope } from './core/scope.ts'
import type { DatabaseHandle } from './db/database.ts'
import { createReadRouter, type ReadRouter } from './db/replicas.ts'
import { type AccessTokens, type AccountsService, createAccessTokens, type PasswordHasher } from './features/accounts/index.ts'
import type { CatalogService } from './features/catalog/index.ts'
import { type OrderJobServices, orderJobHandlers } from './features/orders/index.ts'
import type { ScheduleEnv } from './features/schedule/index.ts'
import type { AppEnv } from './http/context.ts'
import { type RecordRequest, requestRecorder } from './http/edge.ts'
import { createStreamGate, type StreamGate } from './http/stream-gate.ts'
import { type Cache, createCache } from './infra/cache.ts'
import { createQstashDispatcher, inlineDispatcher, type JobDispatcher } from './infra/jobs/dispatch.ts'
import { drainDueJobs, type JobRef, type JobRuntime, type RunOutcome, runJobById } from './infra/jobs/jobs.ts'
import { registerJobMetrics } from './infra/jobs/metrics.ts'
import { createHttpMailer, createRecordingMailer, type Mailer } from './infra/mailer.ts'
import { createNotifyBus, createPollBus, type OrderEventsBus } from './infra/order-events-bus.ts'
import { createSimulatedPaymentProvider, type PaymentProvider, tracedPayments } from './infra/payments.ts'
import { createMemoryRateLimiter, createRedisRateLimiter, type RateLimiter } from './infra/ratelimit.ts'
import { traceRedisCommands } from './infra/redis-spans.ts'
import { createSlots, type Slots } from './lib/slots.ts'
import type { Logger } from './observability/logger.ts'
import type { Counter, Metrics } from './observability/metrics.ts'

/** The part of Workers' ExecutionContext the app uses. */
export interface ExecutionContextLike {
  waitUntil(promise: Promise<unknown>): void
}

/**
 * What truly differs between Workers, Bun and Node, decided once by the
 * runtime's entry file (src/runtime/) and handed to {@link createServices}.
 * Nothing else in src/ asks which runtime it is on.
 */
export interface Runtime {
  /** Where log lines go (batched stdout on Bun and Node, console on Workers). */
  readonly logger: Logger
  /** On for Bun and Node; off on Workers, where an isolate's counters would mean nothing. */
  readonly metrics?: Metrics | undefined
  /**
   * The database: one handle for the process (Bun and Node), or a factory of
   * one per request (Workers: Hyperdrive hands out a connection string and
   * the postgres.js client must be the request's own).
   */
  readonly database: DatabaseHandle | ((ctx: ExecutionContextLike | undefined) => DatabaseHandle)
  /** Streaming replicas of `database` (Bun and Node, DATABASE_REPLICA_URLS), named for metrics; reads are routed to them. */
  readonly replicas?: { name: string; handle: DatabaseHandle }[] | undefined
  /** The peer's address as the runtime reports it (Hono's getConnInfo; CF-Connecting-IP on Workers). */
  peerAddress(c: Context): string | undefined
  /** The password algorithm: argon2id on Bun and Node, PBKDF2 on Workers. */
  readonly passwords: PasswordHasher
  /** Runs jobs when QStash is not configured: the embedded runner on Bun and Node. Default: run due jobs after the response. */
  readonly embeddedDispatcher?: JobDispatcher | undefined
  /** Bun and Node: whether the process is shutting down. Default: never (a Worker isolate is not stopped by a signal). */
  draining?(): boolean
  /** The request tracing middleware, when an OpenTelemetry SDK was started (Bun and Node with OTEL_EXPORTER_OTLP_ENDPOINT). */
  readonly requestTracing?: MiddlewareHandler<AppEnv> | undefined
}

/**
 * Every service of the app, each built once here with its dependencies
 * bound: routes, entry files and tests take them from this object and never
 * spell a dependency list out again.
 */
export interface Services {
  readonly config: Config
  readonly logger: Logger
  readonly metrics: Metrics | undefined
  /** The access log line and the request metrics of one answer, whichever path answered it; undefined when neither is wanted. */
  readonly recordRequest: RecordRequest | undefined
  /** The request tracing middleware (src/runtime/tracing.ts); undefined when nothing is traced. */
  readonly requestTracing: MiddlewareHandler<AppEnv> | undefined
  /** Which engine backs each concern, as `/readyz` and the first log line report it. */
  readonly mode: {
    database: DatabaseHandle['kind']
    /** Replicas that catalog and list reads are routed to. */
    replicas: number
    cache: 'memory' | 'redis'
    queue: 'embedded' | 'qstash'
  }
  /** Redis through the Upstash REST protocol, when configured. */
  readonly redis: Redis | undefined
  readonly passwords: PasswordHasher
  readonly tokens: AccessTokens
  readonly limiter: RateLimiter
  /** Requests refused by a rate limit, by rule and reason (Bun and Node). */
  readonly rateLimitRefusals: Counter<'rule' | 'reason'> | undefined
  /** Routes reads to replicas, when there are any. */
  readonly reads: ReadRouter | undefined
  /** The catalog's two-tier cache. */
  readonly cache: Cache
  readonly payments: PaymentProvider
  readonly mailer: Mailer
  /** Hands committed jobs over: QStash, the embedded runner, or (Workers without QStash) a run after the response. */
  readonly dispatcher: JobDispatcher
  /** `JOB_CONCURRENCY` slots per process (isolate) that QStash's job deliveries take turns in. */
  readonly jobSlots: Slots
  /** Wakes order event streams: LISTEN/NOTIFY where a connection outlives requests (PostgreSQL, PGlite), a poll on Workers. */
  readonly orderEvents: OrderEventsBus
  /** The bound on open event streams per user and per process (isolate); closed at shutdown, which ends them. */
  readonly streams: StreamGate
  /** The scope of one request: shared on Bun and Node, one per request (per `ctx`) on Workers. */
  scope(ctx?: ExecutionContextLike): RequestScope
  /** The accounts service over a scope's database. */
  accounts(scope: RequestScope): AccountsService
  /** The catalog service over a scope's database. */
  catalog(scope: RequestScope): CatalogService
  /** The schedule's services over a scope's database. */
  schedule(scope: RequestScope): ScheduleEnv
  /** Everything a job run needs, over a scope's database. */
  jobs(scope: RequestScope): JobRuntime<OrderJobServices>
  /** Runs one job now (a QStash delivery). */
  runJob(scope: RequestScope, id: string): Promise<RunOutcome>
  /** Runs up to `limit` jobs that are due (Workers' cron without QStash). */
  drainJobs(scope: RequestScope, limit: number): Promise<number>
  /** Hands jobs created by a committed transaction to the dispatcher. */
  dispatch(scope: RequestScope, jobs: JobRef[]): void
  /** The peer's address as the runtime's socket reports it; never taken from a header a client controls. */
  peerAddress(c: Context): string | undefined
  /** Whether the process is shutting down (Bun and Node): `/readyz` answers 503 so balancers send elsewhere. */
  draining(): boolean
  /** Waits for work handed to `waitUntil` and closes what the services opened. */
  close(): Promise<void>
}

/**
 * Builds every service once, over what the runtime provides.
 *
 * @example
 * ```ts
 * const services = createServices({ logger, metrics, database, peerAddress, passwords }, config)
 * const app = createApp(services)
 * ```
 */
export function createServices(runtime: Runtime, config: Config): Services {
  const { logger, metrics } = runtime
  // Every call aborted after UPSTASH_TIMEOUT_MS, the answer's body included: a budget that only stops waiting (the rate
  // limiter's, the cache's) would leave the request running, and a silent Upstash would collect them for ever. A signal
  // made per request (a function), so that an aborted call throws rather than answering "Aborted" as its result.
  const upstashTimeoutMs = config.redis?.timeoutMs ?? 0
  const upstash = config.redis && {
    url: config.redis.url,
    token: config.redis.token,
    enableTelemetry: false,
    retry: { retries: 0 },
    signal: () => AbortSignal.timeout(upstashTimeoutMs),
  }
  const traced = runtime.requestTracing !== undefined
  const client = (options: RedisConfigNodejs) => (traced ? traceRedisCommands(new Redis(options), options.url!) : new Redis(options))
  const redis = upstash ? client(upstash) : undefined
  const pending = new Set<Promise<unknown>>()
  // The cache reads raw strings: no JSON parsing, no base64 decoding of the bytes it serves.
  const cacheRedis = upstash ? client({ ...upstash, automaticDeserialization: false, responseEncoding: false }) : undefined

  const track = (work: Promise<unknown>) => {
    const p = work
      .catch((err) => logger.error('background work failed', { error: err instanceof Error ? err.message : String(err) }))
      .finally(() => pending.delete(p))
    pending.add(p)
  }

  const database = typeof runtime.database === 'function' ? undefined : runtime.database
  let scope: (ctx?: ExecutionContextLike) => RequestScope
  /** Binds a service to a scope: once for the process's shared scope, per request on Workers (as its database is). */
  let bind: <T>(make: (scope: RequestScope) => T) => (scope: RequestScope) => T
  const reads =
    database && runtime.replicas && runtime.replicas.length > 0
      ? createReadRouter({
          primary: database,
          replicas: runtime.replicas,
          maxLagMs: config.database.replicaMaxLagMs,
          pollMs: config.database.replicaPollMs,
          timeoutMs: config.database.timeoutMs,
          metrics,
          logger,
        })
      : undefined
  if (database) {
    const db = database.db
    const shared: RequestScope = { db, database, read: reads ? reads.read : (work) => work(db), waitUntil: track }
    scope = () => shared
    bind = (make) => {
      const one = make(shared)
      return (s) => (s === shared ? one : make(s))
    }
  } else {
    const open = runtime.database as (ctx: ExecutionContextLike | undefined) => DatabaseHandle
    scope = (ctx) => {
      let handle: DatabaseHandle | undefined
      const database = () => (handle ??= open(ctx))
      return {
        get database() {
          return database()
        },
        get db() {
          return database().db
        },
        // No replicas on Workers. An arrow, so that services may hold it apart from the scope (`catalog.read`).
        read: (work) => work(database().db),
        waitUntil: (work) => (ctx ? ctx.waitUntil(work) : track(work)),
      }
    }
    bind = (make) => make
  }

  const cache = createCache({
    // An isolate serves many requests, and a load one of them started is its I/O: each request loads its own misses.
    shareLoads: config.runtime !== 'workers',
    l1MaxEntries: config.cache.l1MaxEntries,
    l1TtlMs: config.cache.l1TtlMs,
    redis: cacheRedis,
    l2TtlSeconds: config.cache.l2TtlSeconds,
    l2TimeoutMs: config.cache.l2TimeoutMs,
    traced,
    metrics,
    logger,
  })
  const payments = tracedPayments(createSimulatedPaymentProvider())
  const mailer = config.mailer.kind === 'http' ? createHttpMailer(config.mailer) : createRecordingMailer()
  const dispatcher = config.qstash
    ? createQstashDispatcher({
        url: config.qstash.url,
        token: config.qstash.token,
        publicUrl: config.publicUrl,
        logger,
        timeoutMs: config.qstash.timeoutMs,
        maxInFlight: config.qstash.maxInFlight,
        metrics,
      })
    : (runtime.embeddedDispatcher ?? inlineDispatcher)
  // The queue is shared by every instance: its depth is read from the table at scrape time (bounded).
  const jobObserver = metrics && database ? registerJobMetrics(metrics, database.db, { handover: config.qstash !== undefined }) : undefined
  const jobs = bind((d): JobRuntime<OrderJobServices> => {
    const rt: JobRuntime<OrderJobServices> = {
      db: d.db,
      handlers: orderJobHandlers,
      deps: { payments, mailer, cache, logger },
      logger,
      dispatch: (list) => dispatcher.dispatch(list, { db: d.db, waitUntil: d.waitUntil, runNow: (id) => runJobById(rt, id) }),
      waitUntil: d.waitUntil,
      backoffBaseMs: config.jobs.backoffBaseMs,
      observer: jobObserver,
    }
    return rt
  })
  const passwords = runtime.passwords
  const tokens = createAccessTokens({
    secret: config.jwt.secret,
    previousSecret: config.jwt.previousSecret,
    ttlSeconds: config.jwt.accessTtlSeconds,
  })

  const orderEvents = database?.listen ? createNotifyBus(database.listen.bind(database), logger) : createPollBus(config.orderEvents.pollMs)
  const streams = createStreamGate({ perUser: config.orderEvents.maxStreamsPerUser, perInstance: config.orderEvents.maxStreams })
  metrics?.gauge('edgeshop_sse_streams', 'Server-sent event streams open in this process', () => streams.open)

  const jobSlots = createSlots(config.jobs.concurrency)
  metrics?.gauge('edgeshop_job_deliveries_running', 'Job deliveries running in this process', () => jobSlots.busy)
  metrics?.gauge('edgeshop_job_deliveries_waiting', 'Job deliveries waiting for a slot in this process', () => jobSlots.waiting)

  if (metrics && database?.stats) {
    const stats = database.stats.bind(database)
    metrics.gauge('edgeshop_db_pool_max', 'Configured size of the Postgres pool', () => stats().max)
    metrics.gauge('edgeshop_db_queries_total', 'Queries sent through the pool outside transactions', () => stats().queries, 'counter')
    metrics.gauge('edgeshop_db_queries_in_flight', 'Queries sent through the pool and not yet answered', () => stats().queriesInFlight)
    metrics.gauge(
      'edgeshop_db_pool_waiting',
      'Queries and transactions beyond the pool size: waiting for a connection, or queued behind another on one',
      () => {
        const s = stats()
        return Math.max(0, s.queriesInFlight + s.transactionsInFlight - s.max)
      },
    )
    metrics.gauge(
      'edgeshop_db_transactions_in_flight',
      'Transactions holding or waiting for a pooled connection',
      () => stats().transactionsInFlight,
    )
    metrics.gauge(
      'edgeshop_db_timeouts_total',
      'Waits for a connection or an answer that ran past their bound',
      () => stats().timeouts,
      'counter',
    )
  }

  return {
    config,
    logger,
    metrics,
    recordRequest: requestRecorder(logger, metrics),
    requestTracing: runtime.requestTracing,
    mode: {
      database: database?.kind ?? 'hyperdrive',
      replicas: runtime.replicas?.length ?? 0,
      cache: redis ? 'redis' : 'memory',
      queue: config.qstash ? 'qstash' : 'embedded',
    },
    redis,
    reads,
    passwords,
    tokens,
    limiter: redis ? createRedisRateLimiter({ redis, timeoutMs: config.rateLimitTimeoutMs }) : createMemoryRateLimiter(),
    rateLimitRefusals: metrics?.counter('edgeshop_rate_limit_refusals_total', 'Requests a rate limit refused, by rule and reason', [
      'rule',
      'reason',
    ]),
    cache,
    payments,
    mailer,
    dispatcher,
    jobSlots,
    orderEvents,
    streams,
    scope,
    accounts: bind((d) => ({ db: d.db, passwords, tokens, refreshTtlSeconds: config.jwt.refreshTtlSeconds, logger })),
    catalog: bind((d) => ({ db: d.db, read: d.read, cache, currency: config.storeCurrency, waitUntil: d.waitUntil })),
    schedule: bind((d) => ({ db: d.db, cache, dispatcher, logger, waitUntil: d.waitUntil })),
    jobs,
    runJob: (d, id) => runJobById(jobs(d), id),
    drainJobs: (d, limit) => drainDueJobs(jobs(d), limit),
    dispatch: (d, list) => {
      if (list.length > 0) jobs(d).dispatch(list)
    },
    peerAddress: (c) => runtime.peerAddress(c),
    draining: () => runtime.draining?.() ?? false,
    async close() {
      // Outbound work ends within its bound (a publish within QSTASH_TIMEOUT_MS, an Upstash call within
      // UPSTASH_TIMEOUT_MS); what is left then (a cache write's later retries) is given up.
      const boundMs = Math.max(1000, config.qstash?.timeoutMs ?? 0, config.redis?.timeoutMs ?? 0)
      let timer: ReturnType<typeof setTimeout> | undefined
      const deadline = new Promise((r) => (timer = setTimeout(r, boundMs)))
      streams.close()
      await Promise.race([Promise.allSettled([dispatcher.close?.(), orderEvents.close(), ...pending]), deadline])
      clearTimeout(timer)
      await reads?.close()
      await database?.close()
    },
  }
}
