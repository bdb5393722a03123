import {
  type Attributes,
  type Context,
  context,
  isSpanContextValid,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from '@opentelemetry/api'

/*
 * Tracing as the app sees it: only `@opentelemetry/api`, which is a no-op
 * until a runtime entry registers an SDK (src/runtime/tracing.ts, Bun and
 * Node with OTEL_EXPORTER_OTLP_ENDPOINT). Without one, a span is a
 * non-recording stub, `traceparentOf` finds nothing and nothing is stored.
 */

/** The tracer every span of edgeshop's own code comes from. */
export const tracer = () => trace.getTracer('edgeshop')

/**
 * The W3C `traceparent` of the active context, to store beside work that
 * runs later (a job row); undefined when nothing is traced.
 *
 * @example
 * ```ts
 * await tx.insert(jobs).values({ ...row, traceparent: activeTraceparent() ?? null })
 * ```
 */
export function activeTraceparent(): string | undefined {
  const active = context.active()
  const span = trace.getSpan(active)
  if (span === undefined || !isSpanContextValid(span.spanContext())) return undefined
  const carrier: { traceparent?: string } = {}
  propagation.inject(active, carrier)
  return carrier.traceparent
}

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$/

/**
 * The trace id a stored `traceparent` names, when that trace was sampled
 * (exported); null otherwise, and for none.
 *
 * @example
 * ```ts
 * sampledTraceId('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01') // '4bf92f3577b34da6a3ce929d0e0e4736'
 * ```
 */
export function sampledTraceId(traceparent: string | null | undefined): string | null {
  const m = traceparent ? TRACEPARENT.exec(traceparent) : null
  return m && (Number.parseInt(m[2]!, 16) & TraceFlags.SAMPLED) !== 0 ? m[1]! : null
}

/**
 * The context a stored `traceparent` names (the propagator drops a malformed
 * one); without one, a context with no span, so the work starts a trace.
 * Built on the active context less its span, not on the root one: what a
 * runtime keeps there stays (the Workers tracer's settings, without which it
 * refuses to start a span).
 */
export function contextOf(traceparent: string | null | undefined): Context {
  const spanless = trace.deleteSpan(context.active())
  return traceparent ? propagation.extract(spanless, { traceparent }) : spanless
}

/** The trace id of `span` (default: the active one) when its trace is sampled (exported), for a log line; undefined otherwise. */
export function traceIdOf(span: Span | undefined = trace.getSpan(context.active())): string | undefined {
  const sampled = span !== undefined && (span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0
  return sampled ? span.spanContext().traceId : undefined
}

/**
 * The request's span (the tracing middleware's, active around the rest of
 * the request): tagged with the request id, and its trace id returned for
 * the request's log line. Undefined when the request is not traced.
 */
export function activeRequestSpan(requestId: string): { traceId: string } | undefined {
  const span = trace.getSpan(context.active())
  if (span === undefined || !span.isRecording()) return undefined
  span.setAttribute('http.request.id', requestId)
  return { traceId: span.spanContext().traceId }
}

/**
 * Runs `work` in a span named `name`: a CLIENT span by default (an outbound
 * call). The span ends when `work` settles and is marked as an error when
 * it throws; `work` may add attributes (an HTTP status) to it.
 *
 * @example
 * ```ts
 * const res = await inSpan('email send', { 'server.address': host }, (span) => fetch(url, init))
 * ```
 */
export function inSpan<T>(
  name: string,
  attributes: Attributes,
  work: (span: Span) => Promise<T>,
  opts: { kind?: SpanKind; parent?: Context } = {},
): Promise<T> {
  return tracer().startActiveSpan(
    name,
    { kind: opts.kind ?? SpanKind.CLIENT, attributes },
    opts.parent ?? context.active(),
    async (span) => {
      try {
        return await work(span)
      } catch (err) {
        failed(span, err)
        throw err
      } finally {
        span.end()
      }
    },
  )
}

/**
 * Whether the active work is traced (a recording span is active): spans of
 * shared plumbing (cache lookups, Redis commands) are made only then, so
 * work no one traces (a background write, a schedule tick) starts no trace.
 */
export function traced(): boolean {
  return trace.getSpan(context.active())?.isRecording() === true
}

/** Marks a span as failed with the error's message (never its payload). */
export function failed(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) })
}

/** Records an HTTP answer's status on a CLIENT span; 4xx and 5xx are errors (the call did not do what it was for). */
export function answered(span: Span, status: number): void {
  span.setAttribute('http.response.status_code', status)
  if (status >= 400) span.setStatus({ code: SpanStatusCode.ERROR })
}
