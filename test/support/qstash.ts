/**
 * A local stand-in for QStash (Upstash's HTTP message queue), for tests and
 * benchmarks. The official local server downloads a binary, so this one is
 * written against what `@upstash/qstash` 2.12 sends and parses, plus QStash's
 * documented delivery behaviour:
 *
 * Publish API (client: `chunk-*.mjs` `Client.publish`/`processHeaders`/`HttpClient`)
 * - `POST /v2/publish/<destination>`: the client joins the destination URL
 *   into the path without encoding it (`new URL([base, 'v2', 'publish', url].join('/'))`),
 *   so the destination is the raw rest of the request target, query string
 *   included (a `#fragment` never arrives). A percent-encoded destination
 *   (`https%3A%2F%2F...`) is decoded. Only http(s) URLs are accepted; URL
 *   groups and `api/...` destinations answer 400.
 * - `Authorization: Bearer <token>`, else 401 `{"error":"Unauthorized"}` (the
 *   `{"error": string}` shape is QStash's OpenAPI `Error`; the client throws
 *   `QstashError(<raw body text>, status)` for any non-2xx but 429).
 * - Honoured headers: `Content-Type`, `Upstash-Method`, `Upstash-Delay`
 *   (`50s`, `1d10h30m`; the client sends `${n}s`), `Upstash-Not-Before` (unix
 *   seconds, wins over the delay), `Upstash-Retries` (default 3),
 *   `Upstash-Retry-Delay` (QStash's expression language: `retried`, + - * /,
 *   pow sqrt abs exp floor ceil round min max; milliseconds),
 *   `Upstash-Timeout`, `Upstash-Deduplication-Id`,
 *   `Upstash-Content-Based-Deduplication: true`, `Upstash-Callback`,
 *   `Upstash-Failure-Callback`, `Upstash-(Failure-)Callback-{Method,Retries,
 *   Timeout,Delay,Retry-Delay,Forward-*}` and `Upstash-Forward-*`. Everything
 *   else starting with `Upstash-` (the client's telemetry headers, labels, flow
 *   control, redaction) is accepted and ignored; other headers are not
 *   forwarded (the client prefixes every custom header with `Upstash-Forward-`).
 * - Answers 200 `{"messageId":"msg_...","url":"<destination>"}`. A duplicate
 *   answers 202 (QStash's deduplication docs) with the ORIGINAL message id and
 *   `"deduplicated": true` (the client's `PublishToUrlResponse` type).
 *   Deduplication keys are scoped to the destination (QStash reports dedup
 *   per URL-group endpoint) and remembered for `deduplicationWindowMs`
 *   (QStash: 10 minutes). Content-based keys hash destination, body,
 *   `Content-Type` and the forwarded headers.
 * - `POST /v2/batch` (the client's `batch`/`batchJSON`: a JSON array of
 *   `{destination, headers, body}`) answers an array of publish responses.
 *   `GET /v2/messages/<id>` answers the client's `MessagePayload` while the
 *   message is pending and 404 once it is delivered or dead-lettered.
 *   `GET /v2/keys` answers `{current, next}`.
 *
 * Deliveries (QStash docs "Receiving Messages")
 * - Method from `Upstash-Method` (default POST), original body and
 *   `Content-Type`, forwarded headers without their prefix, plus
 *   `User-Agent: Upstash-QStash`, `Upstash-Message-Id`, `Upstash-Retried`
 *   (previous attempts, 0 first), `Upstash-Caller-Ip` and `Upstash-Signature`.
 *   QStash does not send `Upstash-Retries` to the destination, and neither does
 *   this. Redirects are not followed (a 3xx is a failure).
 * - A 2xx completes the message; any other status, a connection error or a
 *   timeout (`Upstash-Timeout`, else `deliveryTimeoutMs`) is retried up to
 *   `Upstash-Retries` times. Default backoff before retry n (1-based):
 *   `min(86400, e^(2.5 n))` seconds (QStash's retry docs: 12 s, 2m28s, 30m8s,
 *   ...); a custom `Upstash-Retry-Delay` gets `retried` = 0 for the first
 *   retry. Both are multiplied by `retryDelayScale`. Messages are independent
 *   and delivered concurrently.
 * - Signature: a HS256 JWT keyed with the UTF-8 bytes of the CURRENT signing
 *   key, header `{"alg":"HS256","typ":"JWT"}`, claims `iss: "Upstash"`,
 *   `sub` = destination URL exactly as published, `exp` = iat + 300, `nbf` =
 *   `iat` = now (seconds), `jti: "jwt_..."`, `body` = base64url(sha256(raw
 *   body bytes)) WITH `=` padding, as in QStash's security docs (the client's
 *   `Receiver` strips padding on both sides before comparing).
 * - After the last retry fails the message is dead-lettered (`state:
 *   'failed'`, a `dlqId` like QStash's `1725323658779-0`) and, if
 *   `Upstash-Failure-Callback` was given, a new message is published to it:
 *   POST `application/json` `{status, header, body, retried, maxRetries,
 *   dlqId, sourceMessageId, url, method, sourceHeader, sourceBody, notBefore,
 *   createdAt, callerIP}` (QStash callbacks docs; `body`/`sourceBody` base64,
 *   headers as `Record<string, string[]>`, `notBefore`/`createdAt` unix ms as
 *   strings as documented; the docs misspell `sourceMessageId`; `status` is 0
 *   when the last attempt got no HTTP answer). It is signed for the callback
 *   URL and retried like any message. `Upstash-Callback` gets the same
 *   payload (without `dlqId`) after every attempt.
 *
 * Outage (`pause()`): QStash sits behind a load balancer, so a QStash-side
 * outage reaches the client as an HTTP 5xx, not a refused connection. The
 * default mode therefore answers every request with 503 `{"error":"Service
 * Unavailable"}`; the client throws `QstashError` (status 503) at once. With
 * `pause({ mode: 'refuse' })` the listener is closed instead (the app's own
 * network is down): the client retries network errors (5 retries, backoff
 * `exp(i) * 50` ms, ~4.3 s, unless constructed with `retry`) and then throws
 * `TypeError: fetch failed` (cause `ECONNREFUSED`; a keep-alive socket in
 * fetch's shared pool that the outage cut fails with `UND_ERR_SOCKET` "other
 * side closed" instead, and POSTs are not retried on it). Either way
 * deliveries are held until `resume()`, which listens on the same port again.
 * Deliveries already in flight finish. With `pause({ mode: 'silent' })` the
 * stand-in accepts connections and reads requests but never answers them (a
 * QStash that hangs); `unanswered()` counts the requests it holds open, and
 * `resume()` drops their connections, as a restarted QStash would.
 *
 * The signature hashes the raw body bytes, like QStash; the client's
 * `Receiver` hashes `TextEncoder().encode(body)`, so only UTF-8 bodies can be
 * verified with it.
 *
 * Not implemented: URL groups, queues (`/v2/enqueue`), schedules, the DLQ and
 * logs APIs, flow control, message cancellation, `?qstash_token=` auth.
 * Everything is in memory; `messages()` keeps every record until `close()`.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto'
import {
  type ClientRequest,
  createServer,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import type { AddressInfo } from 'node:net'
import { freePort } from './free-port.ts'

export interface QStashStandInOptions {
  /** The bearer token clients must send. */
  token: string
  currentSigningKey: string
  nextSigningKey: string
  /** Default: a free port on 127.0.0.1. */
  port?: number
  /** Multiplies QStash's retry delays, so tests do not wait minutes (e.g. 0.001). Default 1. */
  retryDelayScale?: number
  /** Deliveries time out after this (QStash default is long); default 15000 ms. */
  deliveryTimeoutMs?: number
  /** How long a deduplication id is remembered; default 10 minutes like QStash. */
  deduplicationWindowMs?: number
}

export type MessageState = 'pending' | 'delivered' | 'failed'

/** One HTTP delivery attempt of a message. */
export interface DeliveryAttempt {
  /** The `Upstash-Retried` value sent: how many attempts came before this one. */
  retried: number
  startedAt: number
  durationMs: number
  /** The destination's status code; absent when there was no HTTP answer. */
  status?: number
  /** Why there was no HTTP answer (connection error, timeout). */
  error?: string
  /** The destination's answer body (UTF-8, truncated to 64 KiB). */
  responseBody: string
  /** The wait before the next attempt as scheduled (ms, after `retryDelayScale`); absent when none follows. */
  retryDelayMs?: number
}

/** Everything the stand-in knows about one message. */
export interface MessageRecord {
  messageId: string
  /** `callback` / `failure-callback` messages are published by the stand-in itself. */
  kind: 'message' | 'callback' | 'failure-callback'
  /** For callbacks: the message whose attempt or failure triggered it. */
  sourceMessageId?: string
  url: string
  method: string
  /** `Content-Type` and forwarded headers, as delivered (canonical names). */
  header: Record<string, string[]>
  /** The body as UTF-8. */
  body: string
  createdAt: number
  /** Unix ms of the first delivery (after delay / not-before). */
  notBefore: number
  maxRetries: number
  callback?: string
  failureCallback?: string
  deduplicationId?: string
  /** Publishes answered as duplicates of this message. */
  dedupHits: number
  /** `failed` = dead-lettered after the last retry. */
  state: MessageState
  attempts: DeliveryAttempt[]
  dlqId?: string
  callerIp: string
}

export type PauseMode = 'unavailable' | 'refuse' | 'silent'

export interface SignOptions {
  url: string
  body: string | Uint8Array
  /** `current` (default), `next`, or a literal key. */
  key?: 'current' | 'next' | string
  /** Default 300 like QStash; negative for an already expired token. */
  expiresInSeconds?: number
  /** `nbf` relative to now; positive for a token that is not valid yet. Default 0. */
  notBeforeOffsetSeconds?: number
}

export interface QStashStandIn {
  /** Base URL: `Client({ baseUrl: url })` / `QSTASH_URL`. */
  url: string
  port: number
  token: string
  /**
   * Simulate an outage: `unavailable` (default) answers every request 503, as
   * QStash behind its load balancer would; `refuse` closes the listener;
   * `silent` holds every request open without an answer. Deliveries are held
   * until `resume()`.
   */
  pause(opts?: { mode?: PauseMode }): Promise<void>
  /** End the outage (same port) and send the held deliveries. */
  resume(): Promise<void>
  /** Requests held open without an answer now (`silent` mode); a client that gives up closes its own. */
  unanswered(): number
  /** Snapshot of every message published and what happened to it. */
  messages(): MessageRecord[]
  /** Resolves when no message is pending delivery; rejects after `timeoutMs` (default 10000). */
  idle(timeoutMs?: number): Promise<void>
  /** The `Upstash-Signature` value the stand-in would send for this delivery. */
  sign(opts: SignOptions): Promise<string>
  close(): Promise<void>
}

interface CallbackConfig {
  url: string
  method?: string
  retries?: number
  timeoutMs?: number
  delayMs?: number
  retryDelay?: RetryDelay
  forward: Record<string, string[]>
}

type RetryDelay = (retried: number) => number

interface Message extends MessageRecord {
  bodyBytes: Buffer
  timeoutMs: number
  retryDelay?: RetryDelay
  callbackConfig?: CallbackConfig
  failureCallbackConfig?: CallbackConfig
}

interface Plan {
  createdAt: number
  destination: string
  method: string
  header: Record<string, string[]>
  body: Buffer
  notBefore: number
  maxRetries: number
  timeoutMs?: number
  retryDelay?: RetryDelay
  dedupKey?: string
  deduplicationId?: string
  callback?: CallbackConfig
  failureCallback?: CallbackConfig
}

interface PublishResult {
  status: number
  json: unknown
}

interface AttemptOutcome {
  status?: number
  error?: string
  header: Record<string, string[]>
  body: Buffer
}

class PublishError extends Error {}

const METHODS = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'])
const DEFAULT_RETRIES = 3
const JWT_LIFETIME_SECONDS = 300
// setTimeout fires at once (with a warning) beyond this; long delays are chained.
const MAX_TIMER_MS = 2_147_483_647
const RESPONSE_BODY_LIMIT = 1024 * 1024
const RECORDED_BODY_LIMIT = 64 * 1024
const ID_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

/** Starts the stand-in on 127.0.0.1. */
export async function startQStash(opts: QStashStandInOptions): Promise<QStashStandIn> {
  const retryDelayScale = opts.retryDelayScale ?? 1
  const deliveryTimeoutMs = opts.deliveryTimeoutMs ?? 15_000
  const dedupWindowMs = opts.deduplicationWindowMs ?? 10 * 60_000
  const records = new Map<string, Message>()
  // Insertion-ordered with one window length, so expired entries are always at the front.
  const dedup = new Map<string, { messageId: string; expiresAt: number }>()
  const pending = new Set<string>()
  const idleWaiters = new Set<() => void>()
  const timers = new Set<NodeJS.Timeout>()
  const held: Message[] = []
  const silenced = new Set<ServerResponse>()
  const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) }
  let paused: PauseMode | undefined
  let closed = false
  let dlqSeq = 0

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => sendJson(res, 500, { error: String(err) }))
  })
  server.keepAliveTimeout = 65_000
  // A silent QStash holds requests for as long as the client waits: no 408 from Node's own request timeout.
  server.requestTimeout = 0
  const port = opts.port ?? (await listenOnFreePort(server))
  if (opts.port !== undefined) await listen(server, port)
  const url = `http://127.0.0.1:${port}`

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req)
    if (paused === 'silent') {
      silenced.add(res)
      res.once('close', () => silenced.delete(res))
      return
    }
    if (paused) return sendJson(res, 503, { error: 'Service Unavailable' })
    if (req.headers.authorization !== `Bearer ${opts.token}`) return sendJson(res, 401, { error: 'Unauthorized' })
    const target = req.url ?? '/'
    const path = target.split('?')[0] ?? ''
    const callerIp = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '')
    if (target.startsWith('/v2/publish/')) {
      if (req.method !== 'POST') return sendJson(res, 405, { error: 'method not allowed' })
      const result = publishOne(target.slice('/v2/publish/'.length), lowerHeaders(req.headers), body, callerIp)
      return sendJson(res, result.status, result.json)
    }
    if (path === '/v2/batch') {
      if (req.method !== 'POST') return sendJson(res, 405, { error: 'method not allowed' })
      const result = publishBatch(body, callerIp)
      return sendJson(res, result.status, result.json)
    }
    if (path.startsWith('/v2/messages/') && req.method === 'GET') {
      const m = records.get(decodeURIComponent(path.slice('/v2/messages/'.length)))
      if (m?.state !== 'pending') return sendJson(res, 404, { error: 'message not found' })
      return sendJson(res, 200, messagePayload(m))
    }
    if (path === '/v2/keys' && req.method === 'GET') {
      return sendJson(res, 200, { current: opts.currentSigningKey, next: opts.nextSigningKey })
    }
    sendJson(res, 404, { error: 'not found' })
  }

  function publishOne(rawDestination: string, headers: Map<string, string>, body: Buffer, callerIp: string): PublishResult {
    try {
      return commit(plan(rawDestination, headers, body), callerIp)
    } catch (err) {
      if (err instanceof PublishError) return { status: 400, json: { error: err.message } }
      throw err
    }
  }

  function publishBatch(body: Buffer, callerIp: string): PublishResult {
    let items: unknown
    try {
      items = JSON.parse(body.toString('utf8'))
    } catch {
      return { status: 400, json: { error: 'batch body must be a JSON array' } }
    }
    if (!Array.isArray(items)) return { status: 400, json: { error: 'batch body must be a JSON array' } }
    const plans: Plan[] = []
    try {
      for (const item of items as Array<{ destination?: unknown; headers?: unknown; body?: unknown }>) {
        if (typeof item?.destination !== 'string') throw new PublishError('every batch entry needs a destination')
        const headers = new Map<string, string>()
        for (const [k, v] of Object.entries((item.headers ?? {}) as Record<string, unknown>)) headers.set(k.toLowerCase(), String(v))
        plans.push(plan(item.destination, headers, Buffer.from(typeof item.body === 'string' ? item.body : '', 'utf8')))
      }
    } catch (err) {
      if (err instanceof PublishError) return { status: 400, json: { error: err.message } }
      throw err
    }
    return { status: 200, json: plans.map((p) => commit(p, callerIp).json) }
  }

  function plan(rawDestination: string, headers: Map<string, string>, body: Buffer): Plan {
    const destination = /^https?%3A/i.test(rawDestination) ? decodeURIComponent(rawDestination) : rawDestination
    if (!/^https?:\/\//i.test(destination) || !URL.canParse(destination)) {
      throw new PublishError(`invalid destination: ${destination} (the stand-in delivers to http(s) URLs only, no URL groups or APIs)`)
    }
    const method = (headers.get('upstash-method') ?? 'POST').toUpperCase()
    if (!METHODS.has(method)) throw new PublishError(`invalid Upstash-Method: ${method}`)
    const header: Record<string, string[]> = {}
    const contentType = headers.get('content-type')
    if (contentType !== undefined) header['Content-Type'] = [contentType]
    Object.assign(header, forwarded(headers, 'upstash-forward-'))

    const now = Date.now()
    let notBefore = now
    const delay = headers.get('upstash-delay')
    if (delay !== undefined) notBefore = now + parseDuration(delay, 'Upstash-Delay')
    const notBeforeHeader = headers.get('upstash-not-before')
    if (notBeforeHeader !== undefined) {
      if (!/^\d+$/.test(notBeforeHeader)) throw new PublishError(`invalid Upstash-Not-Before: ${notBeforeHeader}`)
      notBefore = Math.max(now, Number(notBeforeHeader) * 1000)
    }
    const retries = headers.get('upstash-retries')
    const maxRetries = retries === undefined ? DEFAULT_RETRIES : parseCount(retries, 'Upstash-Retries')
    const timeout = headers.get('upstash-timeout')
    const retryDelay = headers.get('upstash-retry-delay')

    const deduplicationId = headers.get('upstash-deduplication-id')
    let dedupKey: string | undefined
    if (deduplicationId !== undefined) dedupKey = `id\n${destination}\n${deduplicationId}`
    else if (headers.get('upstash-content-based-deduplication') === 'true') {
      const hash = createHash('sha256').update(destination).update('\n')
      for (const name of Object.keys(header).sort()) hash.update(`${name}: ${header[name]?.join(', ')}\n`)
      dedupKey = `content\n${hash.update(body).digest('hex')}`
    }

    return {
      createdAt: now,
      destination,
      method,
      header,
      body,
      notBefore,
      maxRetries,
      ...(timeout !== undefined ? { timeoutMs: parseDuration(timeout, 'Upstash-Timeout') } : {}),
      ...(retryDelay !== undefined ? { retryDelay: compileRetryDelay(retryDelay) } : {}),
      ...(dedupKey !== undefined ? { dedupKey } : {}),
      ...(deduplicationId !== undefined ? { deduplicationId } : {}),
      ...callbackConfig(headers, 'upstash-callback', 'callback'),
      ...callbackConfig(headers, 'upstash-failure-callback', 'failureCallback'),
    }
  }

  function commit(p: Plan, callerIp: string): PublishResult {
    if (p.dedupKey !== undefined) {
      const now = Date.now()
      for (const [key, entry] of dedup) {
        if (entry.expiresAt > now) break
        dedup.delete(key)
      }
      const existing = dedup.get(p.dedupKey)
      if (existing) {
        const original = records.get(existing.messageId)
        if (original) original.dedupHits++
        return { status: 202, json: { messageId: existing.messageId, url: p.destination, deduplicated: true } }
      }
    }
    const m = enqueue({
      kind: 'message',
      createdAt: p.createdAt,
      url: p.destination,
      method: p.method,
      header: p.header,
      body: p.body,
      notBefore: p.notBefore,
      maxRetries: p.maxRetries,
      timeoutMs: p.timeoutMs ?? deliveryTimeoutMs,
      callerIp,
      ...(p.retryDelay ? { retryDelay: p.retryDelay } : {}),
      ...(p.deduplicationId !== undefined ? { deduplicationId: p.deduplicationId } : {}),
      ...(p.callback ? { callbackConfig: p.callback } : {}),
      ...(p.failureCallback ? { failureCallbackConfig: p.failureCallback } : {}),
    })
    if (p.dedupKey !== undefined) dedup.set(p.dedupKey, { messageId: m.messageId, expiresAt: Date.now() + dedupWindowMs })
    return { status: 200, json: { messageId: m.messageId, url: p.destination } }
  }

  function enqueue(init: {
    kind: MessageRecord['kind']
    createdAt?: number
    sourceMessageId?: string
    url: string
    method: string
    header: Record<string, string[]>
    body: Buffer
    notBefore: number
    maxRetries: number
    timeoutMs: number
    callerIp: string
    retryDelay?: RetryDelay
    deduplicationId?: string
    callbackConfig?: CallbackConfig
    failureCallbackConfig?: CallbackConfig
  }): Message {
    const m: Message = {
      messageId: `msg_${randomId(27)}`,
      kind: init.kind,
      url: init.url,
      method: init.method,
      header: init.header,
      body: init.body.toString('utf8'),
      bodyBytes: init.body,
      createdAt: init.createdAt ?? Date.now(),
      notBefore: init.notBefore,
      maxRetries: init.maxRetries,
      timeoutMs: init.timeoutMs,
      dedupHits: 0,
      state: 'pending',
      attempts: [],
      callerIp: init.callerIp,
      ...(init.sourceMessageId !== undefined ? { sourceMessageId: init.sourceMessageId } : {}),
      ...(init.retryDelay ? { retryDelay: init.retryDelay } : {}),
      ...(init.deduplicationId !== undefined ? { deduplicationId: init.deduplicationId } : {}),
      ...(init.callbackConfig ? { callback: init.callbackConfig.url, callbackConfig: init.callbackConfig } : {}),
      ...(init.failureCallbackConfig
        ? { failureCallback: init.failureCallbackConfig.url, failureCallbackConfig: init.failureCallbackConfig }
        : {}),
    }
    records.set(m.messageId, m)
    pending.add(m.messageId)
    schedule(m, m.notBefore)
    return m
  }

  function schedule(m: Message, at: number): void {
    if (closed) return
    const wait = at - Date.now()
    if (wait <= 0) {
      setImmediate(() => deliver(m))
      return
    }
    const timer = setTimeout(
      () => {
        timers.delete(timer)
        schedule(m, at)
      },
      Math.min(wait, MAX_TIMER_MS),
    )
    timers.add(timer)
  }

  function deliver(m: Message): void {
    if (closed) return
    if (paused) {
      held.push(m)
      return
    }
    const retried = m.attempts.length
    const headers: Record<string, string> = {}
    for (const [name, values] of Object.entries(m.header)) headers[name] = values.join(', ')
    headers['User-Agent'] = 'Upstash-QStash'
    headers['Upstash-Message-Id'] = m.messageId
    headers['Upstash-Retried'] = String(retried)
    headers['Upstash-Caller-Ip'] = m.callerIp
    headers['Upstash-Signature'] = signJwt(opts.currentSigningKey, m.url, m.bodyBytes, JWT_LIFETIME_SECONDS, 0)
    const startedAt = Date.now()
    send(m, headers).then((outcome) => {
      const attempt: DeliveryAttempt = {
        retried,
        startedAt,
        durationMs: Date.now() - startedAt,
        responseBody: outcome.body.subarray(0, RECORDED_BODY_LIMIT).toString('utf8'),
        ...(outcome.status !== undefined ? { status: outcome.status } : {}),
        ...(outcome.error !== undefined ? { error: outcome.error } : {}),
      }
      m.attempts.push(attempt)
      if (closed) return
      if (m.callbackConfig) publishCallback(m, m.callbackConfig, 'callback', outcome, retried)
      if (outcome.status !== undefined && outcome.status >= 200 && outcome.status < 300) {
        settle(m, 'delivered')
      } else if (retried < m.maxRetries) {
        const base = m.retryDelay ? m.retryDelay(retried) : Math.min(86_400, Math.exp(2.5 * (retried + 1))) * 1000
        attempt.retryDelayMs = Math.max(0, Number.isFinite(base) ? base : 0) * retryDelayScale
        schedule(m, Date.now() + attempt.retryDelayMs)
      } else {
        m.dlqId = `${Date.now()}-${dlqSeq++}`
        // Published before the source settles, so idle() never sees a gap.
        if (m.failureCallbackConfig) publishCallback(m, m.failureCallbackConfig, 'failure-callback', outcome, retried)
        settle(m, 'failed')
      }
    })
  }

  function send(m: Message, headers: Record<string, string>): Promise<AttemptOutcome> {
    return new Promise((resolve) => {
      const target = new URL(m.url)
      const https = target.protocol === 'https:'
      const chunks: Buffer[] = []
      let size = 0
      let done = false
      let timer: NodeJS.Timeout | undefined
      const finish = (outcome: AttemptOutcome): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        resolve(outcome)
      }
      const failed = (err: Error): void => finish({ error: err.message, header: {}, body: Buffer.alloc(0) })
      let req: ClientRequest
      try {
        req = (https ? httpsRequest : httpRequest)(
          {
            protocol: target.protocol,
            hostname: target.hostname.replace(/^\[(.*)\]$/, '$1'),
            port: target.port || (https ? 443 : 80),
            path: `${target.pathname}${target.search}`,
            method: m.method,
            headers: { ...headers, 'Content-Length': String(m.bodyBytes.length) },
            agent: https ? agents.https : agents.http,
          },
          (res) => {
            res.on('data', (chunk: Buffer) => {
              if (size < RESPONSE_BODY_LIMIT) chunks.push(chunk)
              size += chunk.length
            })
            res.on('end', () =>
              finish({ status: res.statusCode ?? 0, header: rawHeaderRecord(res.rawHeaders), body: Buffer.concat(chunks) }),
            )
            res.on('error', failed)
          },
        )
      } catch (err) {
        // e.g. a header value Node refuses to send: a failed attempt, like QStash's.
        failed(err as Error)
        return
      }
      timer = setTimeout(() => req.destroy(new Error(`timed out after ${m.timeoutMs} ms`)), m.timeoutMs)
      req.on('error', failed)
      req.end(m.bodyBytes)
    })
  }

  function publishCallback(
    m: Message,
    cfg: CallbackConfig,
    kind: 'callback' | 'failure-callback',
    outcome: AttemptOutcome,
    retried: number,
  ): void {
    const payload = {
      status: outcome.status ?? 0,
      header: outcome.header,
      body: outcome.body.toString('base64'),
      retried,
      maxRetries: m.maxRetries,
      ...(kind === 'failure-callback' ? { dlqId: m.dlqId } : {}),
      sourceMessageId: m.messageId,
      url: m.url,
      method: m.method,
      sourceHeader: m.header,
      sourceBody: m.bodyBytes.toString('base64'),
      notBefore: String(m.notBefore),
      createdAt: String(m.createdAt),
      callerIP: m.callerIp,
    }
    const retryDelay = cfg.retryDelay ?? m.retryDelay
    const now = Date.now()
    enqueue({
      kind,
      createdAt: now,
      sourceMessageId: m.messageId,
      url: cfg.url,
      method: cfg.method ?? 'POST',
      header: { 'Content-Type': ['application/json'], ...cfg.forward },
      body: Buffer.from(JSON.stringify(payload), 'utf8'),
      notBefore: now + (cfg.delayMs ?? 0),
      maxRetries: cfg.retries ?? m.maxRetries,
      timeoutMs: cfg.timeoutMs ?? m.timeoutMs,
      callerIp: m.callerIp,
      ...(retryDelay ? { retryDelay } : {}),
    })
  }

  function settle(m: Message, state: 'delivered' | 'failed'): void {
    m.state = state
    pending.delete(m.messageId)
    if (pending.size === 0) for (const waiter of [...idleWaiters]) waiter()
  }

  return {
    url,
    port,
    token: opts.token,
    async pause(pauseOpts = {}) {
      if (paused || closed) return
      paused = pauseOpts.mode ?? 'unavailable'
      if (paused === 'refuse') await stopListening(server)
    },
    async resume() {
      if (!paused || closed) return
      if (paused === 'refuse') await listen(server, port)
      paused = undefined
      for (const res of silenced) res.socket?.destroy()
      silenced.clear()
      for (const m of held.splice(0)) setImmediate(() => deliver(m))
    },
    unanswered() {
      return silenced.size
    },
    messages() {
      return [...records.values()].map(toRecord)
    },
    idle(timeoutMs = 10_000) {
      if (pending.size === 0) return Promise.resolve()
      return new Promise<void>((resolve, reject) => {
        const waiter = (): void => {
          clearTimeout(timer)
          idleWaiters.delete(waiter)
          resolve()
        }
        const timer = setTimeout(() => {
          idleWaiters.delete(waiter)
          const left = [...pending].map((id) => {
            const m = records.get(id)
            return `${id} -> ${m?.url} (${m?.attempts.length} attempts)`
          })
          reject(new Error(`qstash stand-in: ${left.length} message(s) still pending after ${timeoutMs} ms: ${left.join('; ')}`))
        }, timeoutMs)
        idleWaiters.add(waiter)
      })
    },
    async sign({ url: sub, body, key = 'current', expiresInSeconds = JWT_LIFETIME_SECONDS, notBeforeOffsetSeconds = 0 }) {
      const secret = key === 'current' ? opts.currentSigningKey : key === 'next' ? opts.nextSigningKey : key
      return signJwt(secret, sub, typeof body === 'string' ? Buffer.from(body, 'utf8') : body, expiresInSeconds, notBeforeOffsetSeconds)
    },
    async close() {
      if (closed) return
      closed = true
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
      held.length = 0
      for (const res of silenced) res.socket?.destroy()
      silenced.clear()
      if (server.listening) await stopListening(server)
      agents.http.destroy()
      agents.https.destroy()
    },
  }
}

function signJwt(key: string, sub: string, body: Uint8Array, expiresInSeconds: number, notBeforeOffsetSeconds: number): string {
  const now = Math.floor(Date.now() / 1000)
  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url')
  const payload = Buffer.from(
    JSON.stringify({
      iss: 'Upstash',
      sub,
      exp: now + expiresInSeconds,
      nbf: now + notBeforeOffsetSeconds,
      iat: now,
      jti: `jwt_${randomId(28)}`,
      // base64url alphabet but padded, like QStash's documented example token.
      body: createHash('sha256').update(body).digest('base64').replaceAll('+', '-').replaceAll('/', '_'),
    }),
  ).toString('base64url')
  const signature = createHmac('sha256', Buffer.from(key, 'utf8')).update(`${header}.${payload}`).digest('base64url')
  return `${header}.${payload}.${signature}`
}

function callbackConfig(
  headers: Map<string, string>,
  prefix: 'upstash-callback' | 'upstash-failure-callback',
  field: 'callback' | 'failureCallback',
): Partial<Record<'callback' | 'failureCallback', CallbackConfig>> {
  const target = headers.get(prefix)
  if (target === undefined) return {}
  if (!/^https?:\/\//i.test(target) || !URL.canParse(target)) throw new PublishError(`invalid ${canonicalHeader(prefix)} url: ${target}`)
  const cfg: CallbackConfig = { url: target, forward: forwarded(headers, `${prefix}-forward-`) }
  const method = headers.get(`${prefix}-method`)?.toUpperCase()
  if (method !== undefined) {
    if (!METHODS.has(method)) throw new PublishError(`invalid ${canonicalHeader(prefix)}-Method: ${method}`)
    cfg.method = method
  }
  const retries = headers.get(`${prefix}-retries`)
  if (retries !== undefined) cfg.retries = parseCount(retries, `${canonicalHeader(prefix)}-Retries`)
  const timeout = headers.get(`${prefix}-timeout`)
  if (timeout !== undefined) cfg.timeoutMs = parseDuration(timeout, `${canonicalHeader(prefix)}-Timeout`)
  const delay = headers.get(`${prefix}-delay`)
  if (delay !== undefined) cfg.delayMs = parseDuration(delay, `${canonicalHeader(prefix)}-Delay`)
  const retryDelay = headers.get(`${prefix}-retry-delay`)
  if (retryDelay !== undefined) cfg.retryDelay = compileRetryDelay(retryDelay)
  return { [field]: cfg }
}

function forwarded(headers: Map<string, string>, prefix: string): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const [name, value] of headers) {
    if (name.startsWith(prefix) && name.length > prefix.length) out[canonicalHeader(name.slice(prefix.length))] = [value]
  }
  return out
}

function messagePayload(m: Message): Record<string, unknown> {
  return {
    messageId: m.messageId,
    url: m.url,
    method: m.method,
    header: m.header,
    body: m.body,
    maxRetries: m.maxRetries,
    notBefore: m.notBefore,
    createdAt: m.createdAt,
    callerIP: m.callerIp,
    ...(m.callback !== undefined ? { callback: m.callback } : {}),
    ...(m.failureCallback !== undefined ? { failureCallback: m.failureCallback } : {}),
  }
}

function toRecord(m: Message): MessageRecord {
  const { bodyBytes: _bytes, timeoutMs: _timeout, retryDelay: _delay, callbackConfig: _cb, failureCallbackConfig: _fcb, ...record } = m
  return structuredClone(record)
}

/** `50s`, `3m`, `10h`, `1d`, `1d10h30m` -> ms. */
function parseDuration(value: string, name: string): number {
  const match = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(value.trim())
  if (!match || value.trim() === '') throw new PublishError(`invalid ${name} header: ${value}`)
  const [, d = '0', h = '0', m = '0', s = '0'] = match
  return (((Number(d) * 24 + Number(h)) * 60 + Number(m)) * 60 + Number(s)) * 1000
}

function parseCount(value: string, name: string): number {
  if (!/^\d+$/.test(value.trim())) throw new PublishError(`invalid ${name} header: ${value}`)
  return Number(value)
}

const FUNCTIONS: Record<string, (...args: number[]) => number> = {
  pow: Math.pow,
  sqrt: Math.sqrt,
  abs: Math.abs,
  exp: Math.exp,
  floor: Math.floor,
  ceil: Math.ceil,
  round: Math.round,
  min: Math.min,
  max: Math.max,
}

/** Compiles QStash's `Upstash-Retry-Delay` expression (ms) with a small recursive-descent parser. */
function compileRetryDelay(source: string): RetryDelay {
  const tokens = source.match(/\d+(?:\.\d+)?|[A-Za-z_]+|[-+*/(),]|\S/g) ?? []
  let pos = 0
  type Node = (retried: number) => number
  const peek = (): string | undefined => tokens[pos]
  const fail = (): never => {
    throw new PublishError(`invalid Upstash-Retry-Delay expression: ${source}`)
  }
  const expect = (token: string): void => {
    if (tokens[pos++] !== token) fail()
  }
  const expr = (): Node => {
    let left = term()
    while (peek() === '+' || peek() === '-') {
      const op = tokens[pos++]
      const l = left
      const r = term()
      left = op === '+' ? (n) => l(n) + r(n) : (n) => l(n) - r(n)
    }
    return left
  }
  const term = (): Node => {
    let left = unary()
    while (peek() === '*' || peek() === '/') {
      const op = tokens[pos++]
      const l = left
      const r = unary()
      left = op === '*' ? (n) => l(n) * r(n) : (n) => l(n) / r(n)
    }
    return left
  }
  const unary = (): Node => {
    if (peek() === '-') {
      pos++
      const inner = unary()
      return (n) => -inner(n)
    }
    if (peek() === '+') pos++
    return primary()
  }
  const primary = (): Node => {
    const token = tokens[pos++]
    if (token === undefined) return fail()
    if (/^\d/.test(token)) {
      const value = Number(token)
      return () => value
    }
    if (token === '(') {
      const inner = expr()
      expect(')')
      return inner
    }
    if (token === 'retried') return (n) => n
    const fn = FUNCTIONS[token]
    if (!fn) return fail()
    expect('(')
    const args: Node[] = [expr()]
    while (peek() === ',') {
      pos++
      args.push(expr())
    }
    expect(')')
    return (n) => fn(...args.map((a) => a(n)))
  }
  const compiled = expr()
  if (pos !== tokens.length) fail()
  return compiled
}

function canonicalHeader(name: string): string {
  return name
    .toLowerCase()
    .split('-')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('-')
}

function lowerHeaders(headers: IncomingHttpHeaders): Map<string, string> {
  const out = new Map<string, string>()
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out.set(name, Array.isArray(value) ? value.join(', ') : value)
  }
  return out
}

function rawHeaderRecord(raw: string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = canonicalHeader(raw[i] ?? '')
    ;(out[name] ??= []).push(raw[i + 1] ?? '')
  }
  return out
}

function randomId(length: number): string {
  let id = ''
  for (const byte of randomBytes(length)) id += ID_ALPHABET[byte % ID_ALPHABET.length]
  return id
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

function sendJson(res: ServerResponse, status: number, json: unknown): void {
  const body = JSON.stringify(json)
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) })
  res.end(body)
}

function listen(server: Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => {
      server.off('error', reject)
      resolve()
    })
  })
}

async function listenOnFreePort(server: Server): Promise<number> {
  // freePort() leaves a window in which another process can take the port; take a fresh one then.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    try {
      await listen(server, port)
      return (server.address() as AddressInfo).port
    } catch (err) {
      if (attempt >= 5 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
    }
  }
}

function stopListening(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()))
    // Keep-alive sockets would otherwise keep answering (and keep close() waiting).
    server.closeAllConnections()
  })
}
