import { readFileSync } from 'node:fs'
import { inject } from 'vitest'
import { appLayers, createApp } from '../../src/app.ts'
import { type Config, loadConfig } from '../../src/config.ts'
import type { DatabaseHandle } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import type { AppLayer } from '../../src/http/edge.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { createMetrics } from '../../src/observability/metrics.ts'
import { processPasswordHasher } from '../../src/runtime/argon2.ts'
import { createEmbeddedDatabase } from '../../src/runtime/pglite.ts'
import { createServices, type Services } from '../../src/services.ts'

/*
 * The real app, built in-process for `app.request()` tests: a real PGlite
 * (from the run's migrated dump) or a real postgres.js client, the real
 * middleware, and a log that the test can read.
 */

export interface TestApp {
  app: ReturnType<typeof createApp>
  services: Services
  /** The app-level middleware the app was built with. */
  layers: readonly AppLayer[]
  config: Config
  database: DatabaseHandle
  /** Every log line written so far, parsed. */
  logs: Record<string, unknown>[]
  /** Sets the peer address the runtime would report (default 127.0.0.1). */
  setPeer(address: string | undefined): void
  close(): Promise<void>
}

/** A fresh PGlite database with every migration applied. */
export async function freshEmbeddedDatabase() {
  const dump = new Blob([readFileSync(inject('pgliteDump'))])
  return createEmbeddedDatabase({ loadDataDir: dump })
}

/**
 * @example
 * ```ts
 * const t = await createTestApp({ env: { CORS_ORIGINS: 'https://shop.example' } })
 * const res = await t.app.request('/healthz')
 * ```
 */
export async function createTestApp(
  opts: {
    env?: Record<string, string>
    database?: DatabaseHandle | 'pglite' | 'unreachable'
    /** The app-level middleware (default: the app's own, `appLayers`). */
    layers?: (services: Services) => AppLayer[]
  } = {},
): Promise<TestApp> {
  const { config } = loadConfig({ LOG_LEVEL: 'info', ...opts.env }, { runtime: 'node' })
  const logs: Record<string, unknown>[] = []
  const logger = createLogger({ level: config.logLevel, sink: (line) => logs.push(JSON.parse(line)) })
  let database: DatabaseHandle
  if (opts.database === undefined || opts.database === 'pglite') database = await freshEmbeddedDatabase()
  else if (opts.database === 'unreachable')
    // A real client aimed at a port where nothing listens: every query fails to connect.
    database = createPostgresDatabase({
      url: 'postgres://edgeshop:x@127.0.0.1:9/edgeshop',
      poolMax: 2,
      timeoutMs: 1000,
      statementTimeoutMs: 1000,
    })
  else database = opts.database
  let peer: string | undefined = '127.0.0.1'
  const services = createServices(
    {
      logger,
      metrics: createMetrics(),
      database,
      peerAddress: () => peer,
      passwords: processPasswordHasher(config.passwordHash),
    },
    config,
  )
  const layers = (opts.layers ?? appLayers)(services)
  const app = createApp(services, { layers })
  return {
    app,
    services,
    layers,
    config,
    database,
    logs,
    setPeer: (address) => {
      peer = address
    },
    close: () => services.close(),
  }
}
