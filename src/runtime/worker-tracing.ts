import { trace } from '@opentelemetry/api'
import type { TraceConfig } from '@pydantic/otel-cf-workers'
import type { MiddlewareHandler } from 'hono'
import { routePath } from 'hono/route'
import type { Config } from '../config.ts'
import type { AppEnv } from '../http/context.ts'

/*
 * Traces on Workers, with `@pydantic/otel-cf-workers` (the kept fork of
 * `@microlabs/otel-cf-workers`) wrapping the Worker's handlers (worker.ts).
 * It makes the SERVER span of each request and cron run, keeps the context
 * through awaits (AsyncLocalStorage, nodejs_compat), and exports each
 * trace's spans over OTLP/HTTP (JSON) from inside the invocation that made
 * them, once it and its waitUntil work are done: an isolate has no timer to
 * flush a batch later, and I/O belongs to one request. The app's own spans
 * (statements, jobs, outbound calls) come through `@opentelemetry/api` as
 * on Bun and Node.
 */

/**
 * The wrapper's settings for OTEL_EXPORTER_OTLP_ENDPOINT and its sampler.
 * Global `fetch` and `caches` are not patched: the outbound calls that
 * matter already make their own spans (src/infra), named as on Bun and Node.
 *
 * @example
 * ```ts
 * export default instrument(handler, (env) => workerTraceConfig(configOf(env).tracing!))
 * ```
 */
export function workerTraceConfig(tracing: NonNullable<Config['tracing']>): TraceConfig {
  const base = tracing.sampler.replace(/^parentbased_/, '')
  const ratio = base === 'always_off' ? 0 : base === 'traceidratio' ? tracing.ratio : 1
  return {
    exporter: { url: `${tracing.endpoint}/v1/traces` },
    service: { name: tracing.serviceName },
    sampling: { headSampler: { ratio, acceptRemote: tracing.sampler.startsWith('parentbased_') } },
    instrumentation: { instrumentGlobalFetch: false, instrumentGlobalCache: false },
    postProcessor: (spans) => spans.map(asOnBunAndNode),
  }
}

const HEADER_ATTRIBUTE = /^http\.(request|response)\.header\./

type ReadableSpan = Parameters<NonNullable<TraceConfig['postProcessor']>>[0][number]

/**
 * A span as Bun and Node export it: the request span named by method and
 * route pattern, `POST /v1/orders`, or by method alone when no route took it
 * (the wrapper says `fetchHandler POST /v1/orders/0193…`, a name per order);
 * and no header among its attributes (the wrapper records them all,
 * Authorization and cookies too).
 */
function asOnBunAndNode(span: ReadableSpan): ReadableSpan {
  const attributes = span.attributes as Record<string, unknown>
  if (span.name.startsWith('fetchHandler ')) {
    const route = attributes['http.route']
    ;(span as { name: string }).name = `${attributes['http.request.method']}${typeof route === 'string' ? ` ${route}` : ''}`
  }
  for (const key of Object.keys(attributes)) if (HEADER_ATTRIBUTE.test(key)) delete attributes[key]
  return span
}

/**
 * The request middleware of a traced Worker: the wrapper's request span
 * gets the route pattern (`http.route`), which also names it, as
 * `@hono/otel` does on Bun and Node.
 */
export const routeOnRequestSpan: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next()
  trace.getActiveSpan()?.setAttribute('http.route', routePath(c))
}
