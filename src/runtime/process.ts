import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { resolve } from 'node:path'
import type { Context } from 'hono'
import { appLayers, createApp, createOperationsApp, earlyRoute } from '../app.ts'
import { type Config, ConfigError, loadConfig, type RuntimeName } from '../config.ts'
import type { DatabaseHandle } from '../db/database.ts'
import { ensureAdmin } from '../features/accounts/index.ts'
import type { EarlyRoute } from '../http/edge.ts'
import { outboxOnlyDispatcher } from '../infra/jobs/dispatch.ts'
import { createEmbeddedRunner } from '../infra/jobs/runner.ts'
import { createLogger, type Logger } from '../observability/logger.ts'
import { createMetrics } from '../observability/metrics.ts'
import { createServices, type Services } from '../services.ts'
import { processPasswordHasher } from './argon2.ts'
import { migrate } from './migrate.ts'
import { startScheduler } from './scheduler.ts'

/*
 * What Bun and Node share: a long-lived process that owns its database pool
 * (or the embedded PGlite), listens on a port and shuts down gracefully.
 * bun.ts and node.ts only say how to listen and how to read a peer address.
 */

export type FetchHandler = (req: Request, env: unknown) => Response | Promise<Response>

/** How one runtime serves HTTP. */
export interface HttpAdapter {
  name: Extract<RuntimeName, 'bun' | 'node'>
  /**
   * Whether `listen` takes the app's early route (`earlyRoute`) itself,
   * before it builds a `Request` (Node). Otherwise the app's `fetch` takes it.
   */
  takesEarlyRoute: boolean
  /**
   * Serves `fetch`, after `early` when the adapter takes it. Without `reusePort` a port another process
   * listens on fails with `EADDRINUSE` (Bun's `Bun.serve` would otherwise share it when not in development).
   */
  listen(fetch: FetchHandler, opts: { port: number; host: string; reusePort: boolean; early?: EarlyRoute | undefined }): Promise<Listener>
  peerAddress(c: Context): string | undefined
}

export interface Listener {
  port: number
  /** Stops accepting connections and resolves once in-flight requests have finished (or `graceMs` passed). */
  stop(graceMs: number): Promise<void>
}

export interface RunningServer {
  url: string
  config: Config
  services: Services
  logger: Logger
  /** Graceful: stop listening, let requests finish, close the database, flush logs. */
  stop(): Promise<void>
}

/**
 * Lines are batched and written once per turn of the event loop: one write
 * system call for many requests instead of one each.
 */
export function createStdoutSink(): { sink: (line: string) => void; flush: () => void } {
  let lines: string[] = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    if (lines.length === 0) return
    const chunk = `${lines.join('\n')}\n`
    lines = []
    try {
      writeSync(1, chunk)
    } catch {
      process.stdout.write(chunk)
    }
  }
  return {
    sink: (line) => {
      lines.push(line)
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    },
    flush,
  }
}

/** Another live process holds the embedded data directory. */
export class DataDirLockedError extends Error {
  readonly dir: string
  readonly pid: number
  constructor(dir: string, pid: number) {
    super(`another edgeshop process (pid ${pid}) is using ${dir}; stop it or choose another DATA_DIR`)
    this.name = 'DataDirLockedError'
    this.dir = dir
    this.pid = pid
  }
}

/** Another process listens on the address (and `PORT_SHARING` is off). */
export class PortInUseError extends Error {
  constructor(address: string) {
    super(`${address} is already in use by another process: stop that process, or set PORT (or HOST) to a free address`)
    this.name = 'PortInUseError'
  }
}

const hostPort = (host: string, port: number) => `${host.includes(':') ? `[${host}]` : host}:${port}`

/**
 * Fails with {@link PortInUseError} when another process listens on `host:port`. Asked before the
 * database is opened, so a second instance started by mistake touches no data; the real listen later
 * fails the same way should the port be taken in between.
 */
function ensurePortFree(host: string, port: number): Promise<void> {
  return new Promise((done, fail) => {
    const probe = createNetServer()
    probe.once('error', (err: NodeJS.ErrnoException) => fail(err.code === 'EADDRINUSE' ? new PortInUseError(hostPort(host, port)) : err))
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => done()))
  })
}

/**
 * Resolves once a request this process sends to itself now has been answered, or after `boundMs`.
 * Connections wait in the accept queue first in, first out: when its own has been accepted and read,
 * so has every connection made before it, and the requests that were waiting on kept-alive connections
 * have been read in the same turns. With a shared port the kernel may hand that connection to another
 * process, so the answer proves nothing and the whole bound is waited (as when the request fails).
 */
function acceptQueueDrained(host: string, port: number, boundMs: number, shared: boolean): Promise<void> {
  return new Promise((done) => {
    const bound = setTimeout(done, boundMs)
    if (shared) return
    const self = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
    // A connection of its own (no agent): one kept alive from before would skip the queue.
    httpGet({ host: self, port, path: '/healthz', agent: false, timeout: boundMs }, (res) => {
      res.resume()
      res.once('end', () => {
        clearTimeout(bound)
        done()
      })
    }).once('error', () => {})
  })
}

/** Makes sure only one process uses an embedded data directory. */
function lockDataDir(dir: string): () => void {
  mkdirSync(dir, { recursive: true })
  const file = resolve(dir, 'edgeshop.lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(file, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(readFileSync(file, 'utf8').trim())
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) {
        throw new DataDirLockedError(dir, pid)
      }
      rmSync(file, { force: true })
    }
  }
  throw new Error(`could not lock ${dir}`)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Opens the configured database: PostgreSQL through a bounded pool, or the
 * embedded PGlite under DATA_DIR (locked to this process, migrated on open).
 */
export async function openDatabase(
  config: Config,
  logger: Logger,
  opts: { poolMax?: number } = {},
): Promise<{ database: DatabaseHandle; unlock: (() => void) | undefined }> {
  if (config.database.url !== undefined) {
    const { createPostgresDatabase } = await import('../db/postgres.ts')
    const database = createPostgresDatabase({
      url: config.database.url,
      poolMax: opts.poolMax ?? config.database.poolMax,
      timeoutMs: config.database.timeoutMs,
      statementTimeoutMs: config.database.statementTimeoutMs,
      traced: config.tracing !== undefined,
    })
    return { database, unlock: undefined }
  }
  const dataDir = resolve(config.dataDir)
  const unlock = lockDataDir(dataDir)
  try {
    const { createEmbeddedDatabase } = await import('./pglite.ts')
    const database = await createEmbeddedDatabase({ dataDir: resolve(dataDir, 'pglite') })
    await migrate(database)
    logger.info('database ready: migrations applied')
    return { database, unlock }
  } catch (err) {
    unlock()
    throw err
  }
}

/** The streaming replicas of DATABASE_REPLICA_URLS, each through its own bounded pool, named `replica1`… in order. */
async function openReplicas(config: Config): Promise<{ name: string; handle: DatabaseHandle }[]> {
  if (config.database.replicaUrls.length === 0) return []
  const { createPostgresDatabase } = await import('../db/postgres.ts')
  return config.database.replicaUrls.map((url, i) => ({
    name: `replica${i + 1}`,
    handle: createPostgresDatabase({
      url,
      poolMax: config.database.poolMax,
      timeoutMs: config.database.timeoutMs,
      statementTimeoutMs: config.database.statementTimeoutMs,
    }),
  }))
}

/**
 * Makes sure the configured admin exists before the first request. When the
 * database is not reachable yet, the service starts anyway and keeps trying
 * in the background.
 */
async function bootstrapAdmin(services: Services): Promise<void> {
  const { config, logger } = services
  if (!config.admin) return
  const admin = config.admin
  const accounts = services.accounts(services.scope())
  const attempt = async () => {
    const result = await ensureAdmin(accounts, admin)
    logger.info(`admin account ${result}`, { email: admin.email })
  }
  try {
    await attempt()
  } catch (err) {
    logger.warn('admin account not ensured yet; retrying every 30 s', { error: err instanceof Error ? err.message : String(err) })
    const timer = setInterval(() => {
      attempt().then(
        () => clearInterval(timer),
        () => {},
      )
    }, 30_000)
    timer.unref?.()
  }
}

/**
 * Builds the services for a long-lived process, applies migrations in
 * embedded mode, and starts listening.
 */
export async function startServer(adapter: HttpAdapter, env: Record<string, string | undefined> = process.env): Promise<RunningServer> {
  const { config, warnings } = loadConfig(env, { runtime: adapter.name })
  const out = createStdoutSink()
  const logger = createLogger({ level: config.logLevel, sink: out.sink, base: { runtime: adapter.name } })
  const embedded = config.database.url === undefined
  const dataDir = resolve(config.dataDir)

  if (embedded) {
    logger.info(`edgeshop running embedded on ${adapter.name}: PGlite data in ${dataDir}, in-process cache, rate limiter and job runner`, {
      mode: 'embedded',
      dataDir,
    })
  } else {
    const replicas = config.database.replicaUrls.length
    const withReplicas = replicas > 0 ? ` (${replicas} read replica${replicas > 1 ? 's' : ''})` : ''
    logger.info(
      `edgeshop running on ${adapter.name} with PostgreSQL${withReplicas}${config.redis ? ', Redis' : ''}${config.qstash ? ', QStash' : ''}`,
      {
        mode: 'distributed',
        database: 'postgres',
        replicas,
        cache: config.redis ? 'redis' : 'memory',
        queue: config.qstash ? 'qstash' : 'embedded',
      },
    )
  }
  for (const w of warnings) logger.warn(w)

  if (!config.portSharing) await ensurePortFree(config.host, config.port)
  // The SDK is loaded only when spans go somewhere: without an endpoint the app's `@opentelemetry/api` calls stay no-ops.
  const tracing = config.tracing ? (await import('./tracing.ts')).startTracing(config.tracing) : undefined
  logger.info(
    tracing ? `tracing on: spans exported over OTLP/HTTP to ${new URL(config.tracing!.endpoint).host}` : 'tracing off',
    tracing ? { tracing: 'otlp', serviceName: config.tracing!.serviceName } : { tracing: 'off' },
  )
  const { database, unlock } = await openDatabase(config, logger)
  const replicas = await openReplicas(config)

  const metrics = createMetrics()
  let servicesRef: Services | undefined
  let draining = false
  // ROLE=api leaves due jobs in the table for the worker processes' runners; with QStash, deliveries come to the API.
  const runsJobs = config.role !== 'api'
  const runner =
    config.qstash || !runsJobs
      ? undefined
      : createEmbeddedRunner({
          runtime: () => servicesRef!.jobs(servicesRef!.scope()),
          concurrency: config.jobs.concurrency,
          pollMs: config.jobs.pollMs,
          logger,
        })
  const services = createServices(
    {
      logger,
      metrics,
      database,
      replicas,
      peerAddress: adapter.peerAddress,
      passwords: processPasswordHasher(config.passwordHash),
      embeddedDispatcher: runner?.dispatcher ?? outboxOnlyDispatcher,
      draining: () => draining,
      requestTracing: tracing?.middleware,
    },
    config,
  )
  servicesRef = services
  const layers = appLayers(services)
  const serveApi = config.role !== 'worker'
  const app = serveApi ? createApp(services, { layers, earlyRoute: !adapter.takesEarlyRoute }) : createOperationsApp(services, layers)
  await bootstrapAdmin(services)
  // While shutting down, every answer asks the client to close its connection, so keep-alive connections end with their last response.
  // Not async: an answer made synchronously (the catalog's read lane) is passed on as it is, and
  // `@hono/node-server` writes such an answer without awaiting anything.
  const closing = (res: Response) => {
    res.headers.set('Connection', 'close')
    return res
  }
  const fetch: FetchHandler = (req, env) => {
    const res = (app.fetch as FetchHandler)(req, env)
    if (!draining) return res
    return res instanceof Promise ? res.then(closing) : closing(res)
  }
  const lane = adapter.takesEarlyRoute && serveApi ? earlyRoute(services, layers) : undefined
  const early: EarlyRoute | undefined =
    lane &&
    ((method, target, header) => {
      const answer = lane(method, target, header)
      if (answer && draining) answer.headers.Connection = 'close'
      return answer
    })
  let listener: Listener
  try {
    listener = await adapter.listen(fetch, { port: config.port, host: config.host, reusePort: config.portSharing, early })
  } catch (err) {
    await services.close()
    await tracing?.shutdown(1000)
    unlock?.()
    throw (err as NodeJS.ErrnoException).code === 'EADDRINUSE' ? new PortInUseError(hostPort(config.host, config.port)) : err
  }
  const url = `http://${hostPort(config.host, listener.port)}`
  logger.info(`listening on ${url}`, { port: listener.port, role: config.role })
  runner?.start()
  const scheduler = runsJobs ? startScheduler(services) : undefined

  let stopping: Promise<void> | undefined
  const stop = () =>
    (stopping ??= (async () => {
      // Closing the listener at once would reset requests already sent: connections waiting in the accept
      // queue, and requests not yet read on kept-alive connections the server counts as idle. So it goes on
      // answering until those are read, each answer closing its connection; /readyz sends balancers elsewhere.
      draining = true
      // Event streams end now (a client reconnects elsewhere with its last id); one opened while draining ends at once.
      services.streams.close()
      logger.info('shutting down: answering requests already sent, then finishing in-flight requests')
      const started = performance.now()
      await acceptQueueDrained(config.host, listener.port, config.shutdownDrainMs, config.portSharing)
      logger.info('requests already sent are in: closing the listener', { drainMs: Math.round(performance.now() - started) })
      await listener.stop(10_000)
      // The dispatcher closes with them: a schedule tick handing jobs to QStash then stops at once.
      await Promise.all([scheduler?.stop(), runner?.stop(), services.dispatcher.close?.()])
      await services.close()
      // The spans of the last requests and jobs are still batched: export them before the process ends.
      await tracing?.shutdown(5000)
      unlock?.()
      logger.info('stopped cleanly')
      out.flush()
    })())

  return { url, config, services, logger, stop }
}

/**
 * The entry point of `bun run start` and `node src/runtime/node.ts`: starts,
 * then stops gracefully on SIGTERM or SIGINT. A bad configuration exits with
 * status 1 after naming every bad setting.
 */
export async function main(adapter: HttpAdapter): Promise<void> {
  let server: RunningServer
  try {
    server = await startServer(adapter)
  } catch (err) {
    const message =
      err instanceof ConfigError ? err.message : `edgeshop failed to start: ${err instanceof Error ? err.message : String(err)}`
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: message })}\n`)
    process.exit(1)
  }
  // A launcher (`bun run`, npm) relays a terminal's Ctrl-C to its child, which got it from the terminal
  // already: a signal within a second of the first is that same press. A later one insists: exit at once.
  let firstSignalAt: number | undefined
  const onSignal = (signal: string) => {
    const now = performance.now()
    if (firstSignalAt !== undefined) {
      if (now - firstSignalAt < 1000) {
        server.logger.info(`${signal} again within a second: the same stop`)
        return
      }
      process.stderr.write(`received ${signal} again: exiting now\n`)
      process.exit(1)
    }
    firstSignalAt = now
    server.stop().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`shutdown failed: ${err instanceof Error ? err.message : String(err)}\n`)
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  process.on('SIGINT', () => onSignal('SIGINT'))
  // A promise nobody awaited failed: log it loudly and keep serving, rather than drop every in-flight request.
  process.on('unhandledRejection', (reason) => {
    server.logger.error('unhandled rejection', { error: reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason) })
  })
}
