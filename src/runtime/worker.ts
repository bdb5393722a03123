import type { ExecutionContext, ExportedHandler, Hyperdrive, ScheduledController } from '@cloudflare/workers-types'
import { instrument } from '@pydantic/otel-cf-workers'
import { createApp } from '../app.ts'
import { type ConfigIssue, parseConfig } from '../config.ts'
import { AppError } from '../core/errors.ts'
import { createPostgresDatabase } from '../db/postgres.ts'
import { createPasswordHasher, ensureAdmin, workersPasswordAlgorithm } from '../features/accounts/index.ts'
import { runSchedule } from '../features/schedule/index.ts'
import { toProblem } from '../http/problem.ts'
import { createLogger } from '../observability/logger.ts'
import { createServices, type Services } from '../services.ts'
import { routeOnRequestSpan, workerTraceConfig } from './worker-tracing.ts'

/*
 * The Workers entry. Bindings arrive with each request, so the services are
 * built on the first request and kept for the isolate's life. Postgres is
 * reached through Hyperdrive with a postgres.js client per request: a client
 * shared across requests fails in workerd ("Cannot perform I/O on behalf of a
 * different request"). Only handlers are exported: every named export of the
 * main module would be taken as an entrypoint.
 */

interface Env {
  HYPERDRIVE?: Hyperdrive
  [setting: string]: unknown
}

type State = { ok: true; app: ReturnType<typeof createApp>; services: Services } | { ok: false; issues: ConfigIssue[] }

let state: State | undefined

function init(env: Env): State {
  if (state) return state
  const settings: Record<string, unknown> = { ...env }
  if (env.HYPERDRIVE?.connectionString) settings.DATABASE_URL = env.HYPERDRIVE.connectionString
  const parsed = parseConfig(settings, { runtime: 'workers' })
  if (!parsed.ok) return (state = { ok: false, issues: parsed.issues })
  const config = parsed.config
  const logger = createLogger({ level: config.logLevel, base: { runtime: 'workers' } })
  for (const w of parsed.warnings) logger.warn(w)
  const services = createServices(
    {
      logger,
      database: () =>
        createPostgresDatabase({
          url: config.database.url!,
          poolMax: 5,
          timeoutMs: config.database.timeoutMs,
          statementTimeoutMs: config.database.statementTimeoutMs,
          perRequest: true,
          traced: config.tracing !== undefined,
        }),
      // What Hono's getConnInfo for Workers reads too (hono/cloudflare-workers), without importing that adapter.
      peerAddress: (c) => c.req.header('cf-connecting-ip'),
      passwords: createPasswordHasher({ preferred: workersPasswordAlgorithm() }),
      requestTracing: config.tracing ? routeOnRequestSpan : undefined,
    },
    config,
  )
  return (state = { ok: true, app: createApp(services), services })
}

let adminEnsured = false

/**
 * Workers have no start: the configured admin is ensured once per isolate,
 * after the first request's answer (waitUntil), and again on failure.
 */
function ensureAdminOnce(services: Services, ctx: ExecutionContext) {
  const admin = services.config.admin
  if (!admin || adminEnsured) return
  adminEnsured = true
  const work = ensureAdmin(services.accounts(services.scope(ctx)), admin).then(
    (result) => services.logger.info(`admin account ${result}`, { email: admin.email }),
    (err) => {
      adminEnsured = false
      services.logger.warn('admin account not ensured yet', { error: err instanceof Error ? err.message : String(err) })
    },
  )
  ctx.waitUntil(work)
}

function badConfiguration(issues: ConfigIssue[]): Response {
  const err = new AppError('bad_configuration', `Invalid settings: ${issues.map((i) => `${i.setting} (${i.message})`).join('; ')}`)
  return new Response(JSON.stringify(toProblem(err, crypto.randomUUID())), {
    status: 500,
    headers: { 'Content-Type': 'application/problem+json', 'Cache-Control': 'no-store' },
  })
}

const handler = {
  fetch(request, env, ctx) {
    const s = init(env)
    if (!s.ok) {
      console.error(JSON.stringify({ level: 'error', msg: 'bad configuration', settings: s.issues.map((i) => i.setting) }))
      return badConfiguration(s.issues) as never
    }
    ensureAdminOnce(s.services, ctx)
    return s.app.fetch(request as unknown as Request, env, ctx as ExecutionContext) as never
  },

  /**
   * Cron triggers (wrangler.toml): the schedule of this cron, then — without
   * QStash — the jobs that came due (delayed ones; immediate ones ran right
   * after the request that made them).
   */
  async scheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext) {
    const s = init(env)
    if (!s.ok) {
      console.error(JSON.stringify({ level: 'error', msg: 'bad configuration', settings: s.issues.map((i) => i.setting) }))
      return
    }
    const { services } = s
    ensureAdminOnce(services, ctx)
    const scope = services.scope(ctx)
    await runSchedule(controller.cron, new Date(controller.scheduledTime), services.schedule(scope))
    if (services.dispatcher.kind === 'embedded') await services.drainJobs(scope, 50)
  },
} satisfies ExportedHandler<Env>

/** The Worker's tracing settings (OTEL_EXPORTER_OTLP_ENDPOINT and the sampler); undefined when it does not trace. */
const tracingOf = (env: Env) => {
  const s = init(env)
  return s.ok ? s.services.config.tracing : undefined
}

/** The same handlers inside OpenTelemetry's wrapper (worker-tracing.ts): taken only when the Worker traces. */
// (The wrapper types handlers with the ambient Workers globals; ours come from the module's types, the same at run time.)
const traced = instrument({ ...handler } as never, (env: Env) => workerTraceConfig(tracingOf(env)!)) as unknown as typeof handler

export default {
  fetch: (request, env, ctx) => (tracingOf(env) ? traced : handler).fetch(request, env, ctx),
  scheduled: (controller, env, ctx) => (tracingOf(env) ? traced : handler).scheduled(controller, env, ctx),
} satisfies ExportedHandler<Env>
