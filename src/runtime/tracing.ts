import { httpInstrumentationMiddleware } from '@hono/otel'
import { context, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace'
import type { MiddlewareHandler } from 'hono'
import type { Config } from '../config.ts'
import type { AppEnv } from '../http/context.ts'

/*
 * The OpenTelemetry SDK of a Bun or Node process, loaded (a dynamic import
 * from process.ts) only when OTEL_EXPORTER_OTLP_ENDPOINT is set. It
 * registers the global tracer provider, the AsyncLocalStorage context
 * manager (so a span follows its work through awaits) and the W3C
 * trace-context propagator; the app itself only speaks `@opentelemetry/api`.
 */

/** What a process with tracing on holds: the request middleware, and the flush at shutdown. */
export interface Tracing {
  /** `@hono/otel`'s middleware: one SERVER span per routed request, named by method and route pattern. */
  readonly middleware: MiddlewareHandler<AppEnv>
  /** Exports the spans still batched and stops the exporter; bounded by `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void>
}

/**
 * Starts exporting spans over OTLP/HTTP (JSON) to `<endpoint>/v1/traces`,
 * batched (the BatchSpanProcessor's defaults: up to 512 spans or 5 s).
 *
 * @example
 * ```ts
 * const tracing = startTracing({ endpoint: 'http://collector:4318', serviceName: 'edgeshop', sampler: 'parentbased_always_on', ratio: 1 })
 * await tracing.shutdown(5000)
 * ```
 */
export function startTracing(opts: NonNullable<Config['tracing']>): Tracing {
  const exporter = new OTLPTraceExporter({ url: `${opts.endpoint}/v1/traces` })
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': opts.serviceName }),
    sampler: samplerOf(opts.sampler, opts.ratio),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  })
  const contextManager = new AsyncLocalStorageContextManager().enable()
  context.setGlobalContextManager(contextManager)
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  trace.setGlobalTracerProvider(provider)
  return {
    middleware: httpInstrumentationMiddleware({ serviceName: opts.serviceName, captureActiveRequests: false }),
    async shutdown(timeoutMs) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const bound = new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))
      await Promise.race([provider.shutdown().catch(() => {}), bound])
      clearTimeout(timer)
    },
  }
}

/** OTEL_TRACES_SAMPLER's sampler: `parentbased_…` follows the caller's decision (a client's, or a job's stored one) and decides roots itself. */
function samplerOf(name: NonNullable<Config['tracing']>['sampler'], ratio: number): Sampler {
  const base = name.replace(/^parentbased_/, '')
  const root =
    base === 'always_off' ? new AlwaysOffSampler() : base === 'traceidratio' ? new TraceIdRatioBasedSampler(ratio) : new AlwaysOnSampler()
  return name.startsWith('parentbased_') ? new ParentBasedSampler({ root }) : root
}
