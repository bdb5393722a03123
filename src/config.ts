import { z } from 'zod'
import { EMAIL } from './lib/email.ts'

/**
 * Every setting edgeshop reads, in one zod schema. Nothing else in the code
 * reads the environment: entry files hand their environment to
 * {@link parseConfig} and pass the typed result on.
 *
 * @example
 * ```ts
 * const result = parseConfig(process.env, { runtime: 'node' })
 * if (!result.ok) throw new ConfigError(result.issues)
 * ```
 */

/** The places edgeshop runs. */
export type RuntimeName = 'bun' | 'node' | 'workers'

/** One problem with one setting; the value itself is never repeated (it may be a secret). */
export interface ConfigIssue {
  setting: string
  message: string
}

/** A configuration that cannot start the service. Its message names every bad setting. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[]
  constructor(issues: ConfigIssue[]) {
    super(`invalid configuration: ${issues.map((i) => `${i.setting}: ${i.message}`).join('; ')}`)
    this.name = 'ConfigError'
    this.issues = issues
  }
}

/** The development signing secret; refused in production. */
export const DEV_JWT_SECRET = 'edgeshop-development-secret-do-not-use-in-production'

const empty = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v)
const opt = <T extends z.ZodType>(schema: T) => z.preprocess(empty, schema.optional())

const int = (min: number, max: number) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, `must be a whole number between ${min} and ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`))

const bool = z
  .string()
  .trim()
  .regex(/^(true|false)$/, 'must be true or false')
  .transform((v) => v === 'true')

/** OpenTelemetry's sampler names (OTEL_TRACES_SAMPLER), as its SDKs spell them. */
export const TRACE_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' })

const isPostgresUrl = (v: string) => /^postgres(ql)?:\/\/[^\s]+$/.test(v) && URL.canParse(v)
const postgresUrl = z.string().trim().refine(isPostgresUrl, 'must be a postgres:// URL')

/** A comma-separated list, each item trimmed, empty items dropped. */
const commaList = z.string().transform((v) =>
  v
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean),
)

const replicaUrls = commaList
  .refine((list) => list.length > 0, 'must name at least one postgres:// URL')
  .refine((list) => list.every(isPostgresUrl), 'must be comma-separated postgres:// URLs')

const rate = z
  .string()
  .trim()
  .regex(/^\d+\/\d+$/, 'must look like N/seconds, for example 10/60')
  .transform((v) => {
    const [limit, windowSeconds] = v.split('/').map(Number) as [number, number]
    return { limit, windowSeconds }
  })
  .refine((r) => r.limit >= 1 && r.windowSeconds >= 1, 'both numbers must be at least 1')

const origins = commaList.refine(
  (list) => list.every((o) => URL.canParse(o) && new URL(o).origin === o),
  'must be a comma-separated list of origins such as https://shop.example',
)

const schema = z.object({
  NODE_ENV: opt(z.enum(['development', 'production', 'test'])),
  PORT: opt(int(1, 65535)),
  HOST: opt(z.string().trim().min(1)),
  PORT_SHARING: opt(bool),
  ROLE: opt(z.enum(['all', 'api', 'worker'])),
  SHUTDOWN_DRAIN_MS: opt(int(0, 600_000)),
  DATA_DIR: opt(z.string().trim().min(1)),
  DATABASE_URL: opt(postgresUrl),
  DATABASE_REPLICA_URLS: opt(replicaUrls),
  REPLICA_MAX_LAG_MS: opt(int(100, 60_000)),
  REPLICA_POLL_MS: opt(int(50, 60_000)),
  DATABASE_POOL_MAX: opt(int(1, 500)),
  DATABASE_TIMEOUT_MS: opt(int(100, 60_000)),
  STATEMENT_TIMEOUT_MS: opt(int(100, 600_000)),
  UPSTASH_REDIS_REST_URL: opt(httpUrl),
  UPSTASH_REDIS_REST_TOKEN: opt(z.string().trim().min(1)),
  UPSTASH_TIMEOUT_MS: opt(int(10, 60_000)),
  QSTASH_URL: opt(httpUrl),
  QSTASH_TOKEN: opt(z.string().trim().min(1)),
  QSTASH_CURRENT_SIGNING_KEY: opt(z.string().trim().min(1)),
  QSTASH_NEXT_SIGNING_KEY: opt(z.string().trim().min(1)),
  QSTASH_TIMEOUT_MS: opt(int(100, 60_000)),
  QSTASH_MAX_IN_FLIGHT: opt(int(1, 10_000)),
  PUBLIC_URL: opt(httpUrl),
  JWT_SECRET: opt(z.string().min(32, 'must be at least 32 characters')),
  JWT_PREVIOUS_SECRET: opt(z.string().min(32, 'must be at least 32 characters')),
  ACCESS_TOKEN_TTL_SECONDS: opt(int(60, 24 * 3600)),
  REFRESH_TOKEN_TTL_SECONDS: opt(int(3600, 365 * 24 * 3600)),
  PASSWORD_HASH: opt(z.enum(['argon2id', 'pbkdf2-sha256'])),
  TRUSTED_PROXIES: opt(int(0, 10)),
  RATE_LIMIT_TIMEOUT_MS: opt(int(10, 5000)),
  CACHE_L1_MAX_ENTRIES: opt(int(0, 1_000_000)),
  // At most 4 s: an L1 copy must be gone within the 5 s the API promises for other instances to see a write.
  CACHE_L1_TTL_MS: opt(int(50, 4000)),
  CACHE_L2_TTL_SECONDS: opt(int(1, 7 * 24 * 3600)),
  CACHE_L2_TIMEOUT_MS: opt(int(5, 2000)),
  MAILER: opt(z.enum(['recording', 'http'])),
  EMAIL_API_URL: opt(httpUrl),
  EMAIL_API_KEY: opt(z.string().trim().min(1)),
  EMAIL_FROM: opt(z.string().trim().min(3).max(320)),
  EMAIL_TIMEOUT_MS: opt(int(100, 60_000)),
  EMAIL_CIRCUIT_OPEN_MS: opt(int(100, 3_600_000)),
  PAYMENT_PROVIDER: opt(z.enum(['simulated'])),
  JOB_CONCURRENCY: opt(int(1, 64)),
  JOB_POLL_MS: opt(int(10, 60_000)),
  JOB_BACKOFF_BASE_MS: opt(int(1, 600_000)),
  ADMIN_EMAIL: opt(z.string().max(254).regex(EMAIL, 'must be an email address')),
  ADMIN_PASSWORD: opt(z.string().min(10, 'must be 10 to 128 characters').max(128, 'must be 10 to 128 characters')),
  ORDER_TTL_SECONDS: opt(int(5, 7 * 24 * 3600)),
  // Below Bun's idle timeout (60 s, src/runtime/bun.ts) and the usual proxy's, which would cut a quiet stream.
  SSE_HEARTBEAT_MS: opt(int(100, 50_000)),
  SSE_MAX_STREAMS_PER_USER: opt(int(1, 1000)),
  SSE_MAX_STREAMS: opt(int(1, 1_000_000)),
  // At most 1 s: a status change must reach a stream on Workers within the 1 s the API promises.
  ORDER_EVENTS_POLL_MS: opt(int(50, 1000)),
  SCHEDULER_TICK_SECONDS: opt(int(1, 3600)),
  RATE_LIMIT_AUTH: opt(rate),
  CORS_ORIGINS: opt(origins),
  METRICS_TOKEN: opt(z.string().min(16, 'must be at least 16 characters')),
  LOG_LEVEL: opt(z.enum(['debug', 'info', 'warn', 'error', 'silent'])),
  OTEL_EXPORTER_OTLP_ENDPOINT: opt(httpUrl),
  OTEL_SERVICE_NAME: opt(z.string().trim().min(1).max(200)),
  OTEL_TRACES_SAMPLER: opt(z.enum(TRACE_SAMPLERS)),
  OTEL_TRACES_SAMPLER_ARG: opt(
    z
      .string()
      .trim()
      .regex(/^(0(\.\d+)?|1(\.0+)?|\.\d+)$/, 'must be a ratio from 0 to 1')
      .transform(Number),
  ),
  BODY_LIMIT_BYTES: opt(int(1024, 16 * 1024 * 1024)),
  STORE_CURRENCY: opt(z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code such as USD')),
})

type Raw = z.output<typeof schema>

/** The typed configuration every part of edgeshop receives. */
export interface Config {
  env: 'development' | 'production' | 'test'
  /** Production rules apply: no dev default is accepted. */
  production: boolean
  runtime: RuntimeName
  port: number
  host: string
  /**
   * Several processes may listen on one port (SO_REUSEPORT; the kernel spreads connections over them).
   * Off: a port already in use is a start error, named before the database is opened.
   */
  portSharing: boolean
  /**
   * What a Bun/Node process does: `all` serves the API and runs the job runner and the schedule; `api` only
   * serves the API; `worker` runs the job runner and the schedule and serves only /healthz, /readyz and /metrics.
   */
  role: 'all' | 'api' | 'worker'
  /**
   * After SIGTERM/SIGINT, the longest Bun and Node go on accepting and answering (every answer with
   * `Connection: close`, `/readyz` 503) so that requests already sent, still in the accept queue or unread
   * on a kept-alive connection, are answered rather than reset. Usually far less: they stop once a request
   * of their own, sent after the signal, has come through the accept queue (with a shared port, the whole time).
   */
  shutdownDrainMs: number
  dataDir: string
  database: {
    /** Unset: the embedded PGlite database under `dataDir`. */
    url: string | undefined
    poolMax: number
    /** How long a request may wait to connect or for a free connection before 503. */
    timeoutMs: number
    /** Server-side bound on one statement. */
    statementTimeoutMs: number
    /**
     * Streaming replicas of `url` that catalog and list reads go to (src/db/replicas.ts). Empty: every read
     * goes to the primary.
     */
    replicaUrls: string[]
    /** A replica whose replay is further behind the primary than this is skipped (its reads go elsewhere). */
    replicaMaxLagMs: number
    /** How often each replica's position is compared with the primary's. */
    replicaPollMs: number
  }
  /** `timeoutMs`: every Upstash REST call is aborted after this (the rate limit and L2 reads give up sooner, at their budgets). */
  redis: { url: string; token: string; timeoutMs: number } | undefined
  qstash:
    | {
        url: string
        token: string
        currentSigningKey: string
        nextSigningKey: string
        /** Bound of one publish, answer included; also how long shutdown waits for publishes in flight. */
        timeoutMs: number
        /** Publishes under way at once per process; jobs past it wait in the outbox for the minute schedule. */
        maxInFlight: number
      }
    | undefined
  publicUrl: string
  jwt: {
    secret: string
    /** Still accepted for verification, so tokens signed before a rotation stay valid until they expire. */
    previousSecret: string | undefined
    isDevDefault: boolean
    accessTtlSeconds: number
    refreshTtlSeconds: number
  }
  /** How new passwords are hashed: argon2id where the runtime has it (Bun, Node), PBKDF2-SHA256 on Workers. */
  passwordHash: 'argon2id' | 'pbkdf2-sha256'
  /** Reverse proxies in front of Bun/Node whose X-Forwarded-For entries are trusted (0: use the socket address). */
  trustedProxies: number
  /** Budget for one rate-limit check; past it, auth routes fail closed (503). */
  rateLimitTimeoutMs: number
  mailer: { kind: 'recording' } | { kind: 'http'; url: string; apiKey: string; from: string; timeoutMs: number; circuitOpenMs: number }
  payments: { provider: 'simulated' }
  jobs: {
    /** Embedded runner loops per process (Bun and Node without QStash). */
    concurrency: number
    pollMs: number
    /** First retry after this; doubles per attempt (capped at 5 min), ±50 % jitter. */
    backoffBaseMs: number
  }
  cache: {
    /** 0 turns the in-process L1 off. */
    l1MaxEntries: number
    l1TtlMs: number
    l2TtlSeconds: number
    /** Budget of one Redis read before the database is asked instead. */
    l2TimeoutMs: number
  }
  admin: { email: string; password: string } | undefined
  orderTtlSeconds: number
  /** Order event streams (server-sent events). */
  orderEvents: {
    /** A comment line this often keeps an idle stream's connection (and the proxies on its way) open. */
    heartbeatMs: number
    /** Streams open at once per user, in one process (isolate). */
    maxStreamsPerUser: number
    /** Streams open at once in one process (isolate). */
    maxStreams: number
    /** Workers: how often a stream re-reads the event record (no LISTEN there). */
    pollMs: number
  }
  schedulerTickSeconds: number
  rateLimitAuth: { limit: number; windowSeconds: number }
  corsOrigins: string[]
  metricsToken: string | undefined
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent'
  /**
   * OpenTelemetry traces, exported over OTLP/HTTP to `endpoint` (its `/v1/traces`); undefined when
   * `OTEL_EXPORTER_OTLP_ENDPOINT` is not set. Bun and Node: src/runtime/tracing.ts; Workers: src/runtime/worker-tracing.ts.
   */
  tracing:
    | {
        endpoint: string
        serviceName: string
        /** Which traces are kept: a root decision (`always_on`, `always_off`, `traceidratio` at `ratio`), or the caller's (`parentbased_…`). */
        sampler: (typeof TRACE_SAMPLERS)[number]
        ratio: number
      }
    | undefined
  bodyLimitBytes: number
  storeCurrency: string
}

export type ConfigResult = { ok: true; config: Config; warnings: string[] } | { ok: false; issues: ConfigIssue[] }

/** Every setting name the schema knows, for documentation and tests. */
export const SETTINGS = Object.keys(schema.shape) as (keyof typeof schema.shape)[]

/**
 * Validates an environment. All problems are reported at once, each naming
 * its setting. `runtime: 'workers'` applies production rules unless
 * `NODE_ENV=development` is set explicitly (local `wrangler dev`).
 */
export function parseConfig(env: Record<string, unknown>, opts: { runtime: RuntimeName }): ConfigResult {
  const input: Record<string, unknown> = {}
  for (const key of SETTINGS) {
    const value = env[key]
    if (typeof value === 'string') input[key] = value
    else if (typeof value === 'number' || typeof value === 'boolean') input[key] = String(value)
  }
  const parsed = schema.safeParse(input)
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ setting: String(i.path[0] ?? 'configuration'), message: i.message }))
    return { ok: false, issues: dedupe(issues) }
  }
  return resolve(parsed.data, opts.runtime)
}

function resolve(raw: Raw, runtime: RuntimeName): ConfigResult {
  const issues: ConfigIssue[] = []
  const warnings: string[] = []
  const env = raw.NODE_ENV ?? (runtime === 'workers' ? 'production' : 'development')
  const production = env === 'production'
  const port = raw.PORT ?? 3000

  const pair = (a: keyof Raw, b: keyof Raw) => {
    const hasA = raw[a] !== undefined
    const hasB = raw[b] !== undefined
    if (hasA !== hasB) issues.push({ setting: hasA ? b : a, message: `required together with ${hasA ? a : b}` })
    return hasA && hasB
  }

  const hasRedis = pair('UPSTASH_REDIS_REST_URL', 'UPSTASH_REDIS_REST_TOKEN')
  const hasAdmin = pair('ADMIN_EMAIL', 'ADMIN_PASSWORD')
  let hasQstash = false
  const qstashKeys = ['QSTASH_TOKEN', 'QSTASH_CURRENT_SIGNING_KEY', 'QSTASH_NEXT_SIGNING_KEY'] as const
  const givenQstash = qstashKeys.filter((k) => raw[k] !== undefined)
  if (givenQstash.length > 0) {
    for (const k of qstashKeys) {
      if (raw[k] === undefined) issues.push({ setting: k, message: `required together with ${givenQstash.join(', ')}` })
    }
    hasQstash = givenQstash.length === qstashKeys.length
  }

  if (production) {
    if (raw.JWT_SECRET === undefined) issues.push({ setting: 'JWT_SECRET', message: 'required in production' })
    else if (raw.JWT_SECRET === DEV_JWT_SECRET)
      issues.push({ setting: 'JWT_SECRET', message: 'the development secret is refused in production' })
    if (hasQstash && raw.PUBLIC_URL === undefined) {
      issues.push({ setting: 'PUBLIC_URL', message: 'required in production when QStash delivers jobs' })
    }
    if (runtime === 'workers' && raw.DATABASE_URL === undefined) {
      issues.push({ setting: 'DATABASE_URL', message: 'required on Workers (bind Hyperdrive as HYPERDRIVE or set DATABASE_URL)' })
    } else if (raw.DATABASE_URL === undefined && raw.DATA_DIR === undefined) {
      issues.push({
        setting: 'DATABASE_URL',
        message: 'required in production (or set DATA_DIR to choose the embedded database explicitly)',
      })
    }
  } else {
    if (raw.JWT_SECRET === undefined)
      warnings.push('JWT_SECRET is not set: using the development secret; tokens are forgeable by anyone who reads this code')
    if (runtime === 'workers' && raw.DATABASE_URL === undefined) {
      issues.push({ setting: 'DATABASE_URL', message: 'required on Workers (bind Hyperdrive as HYPERDRIVE or set DATABASE_URL)' })
    }
  }

  const emailKeys = ['EMAIL_API_URL', 'EMAIL_API_KEY', 'EMAIL_FROM'] as const
  const givenEmail = emailKeys.filter((k) => raw[k] !== undefined)
  const mailerKind = raw.MAILER ?? (givenEmail.length > 0 ? 'http' : 'recording')
  if (mailerKind === 'http') {
    for (const k of emailKeys) if (raw[k] === undefined) issues.push({ setting: k, message: 'required for the HTTP mailer' })
  } else if (production && raw.MAILER === undefined) {
    issues.push({
      setting: 'EMAIL_API_URL',
      message: 'required in production (with EMAIL_API_KEY and EMAIL_FROM), or set MAILER=recording to only record emails',
    })
  }
  if (production && raw.PAYMENT_PROVIDER === undefined) {
    issues.push({
      setting: 'PAYMENT_PROVIDER',
      message: 'required in production: choose the provider explicitly (only `simulated` is built in)',
    })
  }

  if (raw.PORT_SHARING === true && raw.DATABASE_URL === undefined) {
    issues.push({
      setting: 'PORT_SHARING',
      message: 'needs DATABASE_URL: processes sharing a port must share one database (an embedded one belongs to one process)',
    })
  }
  if (raw.ROLE !== undefined && raw.ROLE !== 'all' && raw.DATABASE_URL === undefined) {
    issues.push({
      setting: 'ROLE',
      message: `${raw.ROLE} needs DATABASE_URL: api and worker processes share one database (an embedded one belongs to one process)`,
    })
  }
  if (runtime === 'workers' && raw.ROLE !== undefined && raw.ROLE !== 'all') {
    issues.push({ setting: 'ROLE', message: 'is for Bun and Node: on Workers, QStash and the cron trigger run the jobs and the schedule' })
  }
  if (raw.DATABASE_REPLICA_URLS !== undefined) {
    if (runtime === 'workers') {
      issues.push({
        setting: 'DATABASE_REPLICA_URLS',
        message: 'is for Bun and Node: on Workers, bind one Hyperdrive per database (replica routing needs a process that polls replicas)',
      })
    } else if (raw.DATABASE_URL === undefined) {
      issues.push({ setting: 'DATABASE_REPLICA_URLS', message: 'needs DATABASE_URL: replicas follow a PostgreSQL primary' })
    }
  }
  const maxLagMs = raw.REPLICA_MAX_LAG_MS ?? 2000
  const pollMs = raw.REPLICA_POLL_MS ?? 250
  if (pollMs >= maxLagMs) {
    issues.push({
      setting: 'REPLICA_POLL_MS',
      message: `must be below REPLICA_MAX_LAG_MS (${maxLagMs}): a lag is only seen when it is polled`,
    })
  }
  // An instance whose L1 was filled from a replica may show what the replica showed for one L1 lifetime.
  const l1TtlMs = raw.CACHE_L1_TTL_MS ?? 2000
  if (raw.DATABASE_REPLICA_URLS !== undefined && maxLagMs + l1TtlMs > 5000) {
    issues.push({
      setting: 'REPLICA_MAX_LAG_MS',
      message: `with CACHE_L1_TTL_MS (${l1TtlMs}) must add up to at most 5000: other instances must see a write within 5 s`,
    })
  }
  if (runtime === 'workers' && raw.PASSWORD_HASH === 'argon2id') {
    issues.push({ setting: 'PASSWORD_HASH', message: 'argon2id is not available on Workers; use pbkdf2-sha256' })
  }
  if (raw.JWT_PREVIOUS_SECRET !== undefined && raw.JWT_PREVIOUS_SECRET === raw.JWT_SECRET) {
    issues.push({ setting: 'JWT_PREVIOUS_SECRET', message: 'must differ from JWT_SECRET' })
  }

  if (issues.length > 0) return { ok: false, issues: dedupe(issues) }

  const config: Config = {
    env,
    production,
    runtime,
    port,
    host: raw.HOST ?? (production ? '0.0.0.0' : '127.0.0.1'),
    portSharing: raw.PORT_SHARING ?? false,
    role: raw.ROLE ?? 'all',
    shutdownDrainMs: raw.SHUTDOWN_DRAIN_MS ?? 5000,
    dataDir: raw.DATA_DIR ?? '.data',
    database: {
      url: raw.DATABASE_URL,
      poolMax: raw.DATABASE_POOL_MAX ?? 10,
      timeoutMs: raw.DATABASE_TIMEOUT_MS ?? 3000,
      statementTimeoutMs: raw.STATEMENT_TIMEOUT_MS ?? 10_000,
      replicaUrls: raw.DATABASE_REPLICA_URLS ?? [],
      replicaMaxLagMs: maxLagMs,
      replicaPollMs: pollMs,
    },
    redis: hasRedis
      ? { url: raw.UPSTASH_REDIS_REST_URL!, token: raw.UPSTASH_REDIS_REST_TOKEN!, timeoutMs: raw.UPSTASH_TIMEOUT_MS ?? 1000 }
      : undefined,
    qstash: hasQstash
      ? {
          url: raw.QSTASH_URL ?? 'https://qstash.upstash.io',
          token: raw.QSTASH_TOKEN!,
          currentSigningKey: raw.QSTASH_CURRENT_SIGNING_KEY!,
          nextSigningKey: raw.QSTASH_NEXT_SIGNING_KEY!,
          timeoutMs: raw.QSTASH_TIMEOUT_MS ?? 5000,
          maxInFlight: raw.QSTASH_MAX_IN_FLIGHT ?? 64,
        }
      : undefined,
    publicUrl: (raw.PUBLIC_URL ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    jwt: {
      secret: raw.JWT_SECRET ?? DEV_JWT_SECRET,
      previousSecret: raw.JWT_PREVIOUS_SECRET,
      isDevDefault: raw.JWT_SECRET === undefined,
      accessTtlSeconds: raw.ACCESS_TOKEN_TTL_SECONDS ?? 900,
      refreshTtlSeconds: raw.REFRESH_TOKEN_TTL_SECONDS ?? 30 * 24 * 3600,
    },
    passwordHash: raw.PASSWORD_HASH ?? (runtime === 'workers' ? 'pbkdf2-sha256' : 'argon2id'),
    trustedProxies: raw.TRUSTED_PROXIES ?? 0,
    rateLimitTimeoutMs: raw.RATE_LIMIT_TIMEOUT_MS ?? 300,
    mailer:
      mailerKind === 'http'
        ? {
            kind: 'http',
            url: raw.EMAIL_API_URL!,
            apiKey: raw.EMAIL_API_KEY!,
            from: raw.EMAIL_FROM!,
            timeoutMs: raw.EMAIL_TIMEOUT_MS ?? 5000,
            circuitOpenMs: raw.EMAIL_CIRCUIT_OPEN_MS ?? 30_000,
          }
        : { kind: 'recording' },
    payments: { provider: raw.PAYMENT_PROVIDER ?? 'simulated' },
    jobs: { concurrency: raw.JOB_CONCURRENCY ?? 2, pollMs: raw.JOB_POLL_MS ?? 500, backoffBaseMs: raw.JOB_BACKOFF_BASE_MS ?? 1000 },
    cache: {
      l1MaxEntries: raw.CACHE_L1_MAX_ENTRIES ?? 10_000,
      l1TtlMs: raw.CACHE_L1_TTL_MS ?? 2000,
      l2TtlSeconds: raw.CACHE_L2_TTL_SECONDS ?? 300,
      l2TimeoutMs: raw.CACHE_L2_TIMEOUT_MS ?? 50,
    },
    admin: hasAdmin ? { email: raw.ADMIN_EMAIL!.toLowerCase(), password: raw.ADMIN_PASSWORD! } : undefined,
    orderTtlSeconds: raw.ORDER_TTL_SECONDS ?? 900,
    orderEvents: {
      heartbeatMs: raw.SSE_HEARTBEAT_MS ?? 15_000,
      maxStreamsPerUser: raw.SSE_MAX_STREAMS_PER_USER ?? 5,
      maxStreams: raw.SSE_MAX_STREAMS ?? 1000,
      pollMs: raw.ORDER_EVENTS_POLL_MS ?? 500,
    },
    schedulerTickSeconds: raw.SCHEDULER_TICK_SECONDS ?? 60,
    rateLimitAuth: raw.RATE_LIMIT_AUTH ?? { limit: 10, windowSeconds: 60 },
    corsOrigins: raw.CORS_ORIGINS ?? [],
    metricsToken: raw.METRICS_TOKEN,
    logLevel: raw.LOG_LEVEL ?? 'info',
    tracing:
      raw.OTEL_EXPORTER_OTLP_ENDPOINT !== undefined
        ? {
            endpoint: raw.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, ''),
            serviceName: raw.OTEL_SERVICE_NAME ?? 'edgeshop',
            sampler: raw.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on',
            ratio: raw.OTEL_TRACES_SAMPLER_ARG ?? 1,
          }
        : undefined,
    bodyLimitBytes: raw.BODY_LIMIT_BYTES ?? 64 * 1024,
    storeCurrency: raw.STORE_CURRENCY ?? 'USD',
  }
  return { ok: true, config, warnings }
}

function dedupe(issues: ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>()
  return issues.filter((i) => {
    const key = `${i.setting}\u0000${i.message}`
    if (seen.has(key)) return false
    seen.add(key)
    return true
  })
}

/** Like {@link parseConfig}, but throws a {@link ConfigError}. */
export function loadConfig(env: Record<string, unknown>, opts: { runtime: RuntimeName }): { config: Config; warnings: string[] } {
  const result = parseConfig(env, opts)
  if (!result.ok) throw new ConfigError(result.issues)
  return { config: result.config, warnings: result.warnings }
}
