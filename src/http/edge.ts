import type { Context, MiddlewareHandler, TypedResponse } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { matchedRoutes } from 'hono/route'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { JSONParsed } from 'hono/utils/types'
import { AppError } from '../core/errors.ts'
import type { Logger } from '../observability/logger.ts'
import { LATENCY_BUCKETS, type Metrics } from '../observability/metrics.ts'
import { activeRequestSpan } from '../observability/tracing.ts'
import type { AppEnv, PlainAnswer, RequestScope } from './context.ts'
import { problemResponse } from './problem.ts'
import { API_HEADERS } from './security.ts'

const SANE_ID = /^[\w\-=.:]{1,128}$/

/**
 * New request ids, shaped like UUIDs: the first four groups are random per
 * isolate, the last counts requests (`6f1c…-8a41-000000000b2f`). Unique
 * across processes without a random draw per request, which showed up at ~2%
 * of the hot read's CPU time. Made lazily: Workers forbid random values at
 * module scope.
 */
let idPrefix = ''
let idCounter = 0
function newRequestId(): string {
  if (idPrefix === '') idPrefix = crypto.randomUUID().slice(0, 24)
  // 16^11 + n is twelve hex digits for any count a process will reach: no padding step.
  return idPrefix + (0x100000000000 + ++idCounter).toString(16)
}

/** The route pattern that answered (`/v1/products/:id`), or `unmatched`. Patterns, never raw paths: bounded label sets, no ids or query strings in logs. */
export function routeOf(c: Context): string {
  const routes = matchedRoutes(c)
  for (let i = routes.length - 1; i >= 0; i--) {
    const r = routes[i]!
    if (r.method !== 'ALL') return r.path
  }
  return 'unmatched'
}

const complete = new WeakSet<Response>()

export type { PlainAnswer }

/**
 * A route answered before routing when it can be (the catalog's read lane):
 * it gets the method, the request target (a path, or an absolute URL as
 * `Request.url` has it) and a header reader, and answers with every header
 * final — a {@link PlainAnswer}, or what its {@link AnswerForm} makes — or
 * undefined, and the request is routed as usual. It logs and counts what it
 * answers itself.
 */
export type EarlyRoute<Answer = PlainAnswer> = (method: string, target: string, header: HeaderReader) => Answer | undefined

/** Reads a request header by its lower-case name. */
export type HeaderReader = (name: string) => string | null | undefined

/**
 * An app-level middleware, and what an {@link EarlyRoute} does in its place.
 * `createApp` applies the app's layers in order, and the catalog's read lane,
 * which answers L1 hits before routing, reads the same list: a layer either
 * says what its effect on such an answer is (`early`), or is `'routed'`, and
 * while it is in the app every request is routed through it. A middleware
 * added with `app.use` outside this list fails the read lane's test.
 *
 * @example
 * ```ts
 * const cors: AppLayer = { handler: corsFor(origins), early: { headers: CORS_HEADERS_WITHOUT_ORIGIN, routes: (header) => header('origin') != null } }
 * ```
 */
export interface AppLayer {
  name: string
  handler: MiddlewareHandler<AppEnv>
  early: EarlyPart | 'routed'
}

/** What an early answer does in place of a layer: the headers the layer adds, and the requests it must see itself. */
export interface EarlyPart {
  /** Headers the layer adds to the answer; early answers carry them too. */
  headers?: Readonly<Record<string, string>>
  /** True for a request the layer must handle itself: the early route leaves it to the router. */
  routes?: (header: HeaderReader) => boolean
}

/** The app's layers as one early part: their headers together, and a request routed when any of them asks; undefined when a layer is `'routed'`. */
export function earlyPartOf(layers: readonly AppLayer[]): EarlyPart | undefined {
  const headers: Record<string, string> = {}
  const routes: ((header: HeaderReader) => boolean)[] = []
  for (const { early } of layers) {
    if (early === 'routed') return undefined
    Object.assign(headers, early.headers)
    if (early.routes) routes.push(early.routes)
  }
  // Most apps have one such layer or none (CORS): the common case calls it directly.
  if (routes.length <= 1) return { headers, routes: routes[0] }
  return { headers, routes: (header) => routes.some((routed) => routed(header)) }
}

/**
 * How a lane's answers are made, chosen once per runtime: a set of headers
 * (ETag included) is prepared once (`prepare`), and each answer is that set
 * plus its own request id (`make`).
 */
export interface AnswerForm<Base, Answer> {
  prepare(headers: Readonly<Record<string, string>>): Base
  make(status: number, body: string | null, base: Base, requestId: string): Answer
}

/** Answers as plain records: what Node writes with `writeHead` as it is. */
export const plainAnswers: AnswerForm<Readonly<Record<string, string>>, PlainAnswer> = {
  prepare: (headers) => headers,
  make: (status, body, base, requestId) => ({ status, body, headers: { ...base, 'X-Request-Id': requestId } }),
}

/**
 * Answers as `Response`s whose headers are copied from a prepared `Headers`:
 * for a runtime that is handed a Response (Bun, Workers). On Bun a copy and
 * a `set` cost less per answer than converting a record of ten headers
 * (docs/DECISIONS.md, "The read lane answers in the runtime's form").
 */
export const responseAnswers: AnswerForm<Headers, Response> = {
  prepare: (headers) => new Headers(headers),
  make: (status, body, base, requestId) => {
    const res = new Response(body, { status, headers: base })
    res.headers.set('X-Request-Id', requestId)
    return res
  },
}

/**
 * An answer whose headers are final when it is made: the API headers and the
 * request id are in its record already, so {@link edge} adds nothing
 * afterwards. On Node this keeps the answer a plain header record that is
 * written as it is, instead of a `Headers` object converted back per request;
 * on every runtime it saves the per-header checks. The catalog's reads answer
 * this way; everything else may use Hono's helpers and gets the same headers
 * added by {@link edge}.
 *
 * @example
 * ```ts
 * return finalAnswer({ status: 200, body, headers: { ...API_HEADERS, 'X-Request-Id': c.get('requestId') } })
 * ```
 */
export function finalAnswer(answer: PlainAnswer): Response {
  // A PlainAnswer is a ResponseInit (status, headers) as it is.
  const res = new Response(answer.body, answer)
  complete.add(res)
  return res
}

/**
 * A JSON answer with every header final ({@link finalAnswer}): the API
 * headers, `Content-Type`, `headers` and the request id. It is also set as
 * the request's `answer`, which `idempotency()` stores as it is.
 *
 * @example
 * ```ts
 * return jsonAnswer(c, 201, order, { Location: `/v1/orders/${order.id}` })
 * ```
 */
export function jsonAnswer<T, S extends ContentfulStatusCode>(
  c: Context<AppEnv>,
  status: S,
  value: T,
  headers?: Readonly<Record<string, string>>,
): JsonAnswer<T, S> {
  const answer: PlainAnswer = {
    status,
    body: JSON.stringify(value),
    headers: { ...API_HEADERS, 'Content-Type': 'application/json', ...headers, 'X-Request-Id': c.get('requestId') },
  }
  c.set('answer', answer)
  return finalAnswer(answer) as JsonAnswer<T, S>
}

/**
 * A Response typed as the JSON of `T` with status `S`, as Hono's `c.json`
 * types its own: routes return it, and `AppType` keeps the route's
 * response type (test/unit/app-types.test.ts).
 */
export type JsonAnswer<T, S extends ContentfulStatusCode> = Response & TypedResponse<JSONParsed<T>, S, 'json'>

/**
 * The request id of an answer: the caller's `X-Request-Id` when it is sane
 * (1–128 of `[A-Za-z0-9_\-=.:]`), else a new one.
 */
export function requestIdFrom(given: string | null | undefined): string {
  return given != null && SANE_ID.test(given) ? given : newRequestId()
}

/**
 * Records one answered request: its log line and its metrics. Made once per
 * services (`services.recordRequest`): {@link edge} and the early routes
 * record through it, so every answer counts once, under one set of series.
 */
export type RecordRequest = (method: string, route: string, status: number, requestId: string, start: number, traceId?: string) => void

/** The recorder for this logger and registry; undefined when neither wants requests. */
export function requestRecorder(logger: Logger, metrics: Metrics | undefined): RecordRequest | undefined {
  const logRequests = logger.enabled('info')
  if (!logRequests && !metrics) return undefined
  const requests = metrics?.counter('edgeshop_http_requests_total', 'HTTP requests by method, route and status', [
    'method',
    'route',
    'status',
  ])
  const latency = metrics?.histogram('edgeshop_http_request_duration_seconds', 'HTTP request latency by route', ['route'], LATENCY_BUCKETS)
  // The series of the last answer's labels, kept: a run of answers of one route and status (the hot read's) finds them once.
  let last: { method: string; route: string; status: number; count: { inc(): void }; time: { observe(v: number): void } } | undefined
  return (method, route, status, requestId, start, traceId) => {
    const durationMs = performance.now() - start
    if (requests) {
      if (last === undefined || last.method !== method || last.route !== route || last.status !== status)
        last = { method, route, status, count: requests.with({ method, route, status }), time: latency!.with({ route }) }
      last.count.inc()
      last.time.observe(durationMs / 1000)
    }
    // Built by hand: the method is an HTTP token, the route a pattern from the code, the request id matched SANE_ID,
    // the trace id is 32 hex digits — nothing to escape.
    if (logRequests)
      logger.serialized(
        'info',
        'request',
        `"method":"${method}","route":"${route}","status":${status},"durationMs":${Math.round(durationMs * 100) / 100},"requestId":"${requestId}"${traceId === undefined ? '' : `,"traceId":"${traceId}"`}`,
      )
  }
}

export interface EdgeOptions {
  /** Where answers are logged and counted ({@link requestRecorder}). */
  record: RecordRequest | undefined
  metrics?: Metrics | undefined
  /** The largest request body accepted; larger ones are 413 `payload_too_large` before any handler reads them. */
  bodyLimitBytes: number
  /** The request's scope: its database and `waitUntil` (shared on Bun and Node, per request on Workers). */
  scope: (c: Context<AppEnv>) => RequestScope
  /** Requests are traced (a tracing layer runs before this one): the request's span gets its id, its log line the trace id. */
  traced?: boolean
}

/** The body's length as the request declares it; undefined without Content-Length, or when Transfer-Encoding overrides it. */
function declaredLength(c: Context): number | undefined {
  const length = c.req.header('content-length')
  if (length === undefined || c.req.header('transfer-encoding') !== undefined) return undefined
  return Number.parseInt(length, 10) || 0
}

/**
 * The one middleware every routed request passes through, outermost: it
 * gives the request its id (the caller's `X-Request-Id` when it is sane, else
 * a new id) and its scope, enforces the body limit on requests that
 * carry one, adds the API's security headers and the request id to the
 * answer, and writes one log line and the request metrics. One layer instead
 * of five, because each layer is a closure, a promise and a context switch on
 * every request of the hot path (docs/DECISIONS.md, "One observing
 * middleware instead of three"). The read lane does its work for L1 hits
 * (its layer in `appLayers`, src/app.ts).
 *
 * @example
 * ```ts
 * app.use(edge({ record: requestRecorder(logger, metrics), metrics, bodyLimitBytes: 65536, scope: () => shared }))
 * ```
 */
export function edge(opts: EdgeOptions): MiddlewareHandler<AppEnv> {
  const { record, metrics, scope, bodyLimitBytes } = opts
  const traced = opts.traced === true
  let inFlight = 0
  metrics?.gauge('edgeshop_http_requests_in_flight', 'Requests received and not yet answered', () => inFlight)
  // Answered here rather than thrown: this layer is outside the error handler's reach.
  const tooLarge = (c: Context) => problemResponse(c, new AppError('payload_too_large', `The body may be at most ${bodyLimitBytes} bytes`))
  // A body without a declared length (chunked) is counted as it is read.
  const limitBody = bodyLimit({ maxSize: bodyLimitBytes, onError: tooLarge })

  return async function edge(c, next) {
    const start = performance.now()
    const requestId = requestIdFrom(c.req.header('x-request-id'))
    c.set('requestId', requestId)
    c.set('scope', scope(c))
    const span = traced ? activeRequestSpan(requestId) : undefined
    const method = c.req.method
    inFlight++
    try {
      // GET and HEAD carry no body, and a declared length is checked as it is, as hono/body-limit does: looking
      // at `raw.body` first would make Node build a full Request and read the body through a web stream.
      const length = method === 'GET' || method === 'HEAD' ? 0 : declaredLength(c)
      if (length !== undefined) {
        if (length > bodyLimitBytes) c.res = tooLarge(c)
        else await next()
      } else {
        const refused = await limitBody(c, next)
        if (refused instanceof Response) c.res = refused
      }
    } finally {
      inFlight--
    }
    const res = c.res
    if (!complete.has(res)) {
      const headers = res.headers
      for (const name in API_HEADERS) if (!headers.has(name)) headers.set(name, API_HEADERS[name]!)
      headers.set('X-Request-Id', requestId)
    }
    record?.(method, routeOf(c), res.status, requestId, start, span?.traceId)
  }
}
