import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type AppServer, adminToken, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { startEmailApi } from '../support/email-api.ts'
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../support/otlp-receiver.ts'
import { type QStashStandIn, startQStash } from '../support/qstash.ts'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { runCommand } from '../support/run-command.ts'
import { startUpstashRest, type UpstashRestHandle } from '../support/upstash-rest.ts'

/*
 * Traces on Bun and Node, exported over OTLP/HTTP to a receiver the test
 * runs: a checkout and its payment are one trace from the requests through
 * the outbox (the job row's stored traceparent) to the capture, its retries,
 * the email job and the outbound calls; with the embedded runner and with
 * QStash delivering. The spans are asserted after a graceful stop, so the
 * flush at shutdown is what brings the last ones.
 */

const ADMIN = { email: 'trace-admin@example.test', password: 'trace admin password' }
const MAIL_KEY = 'trace-mail-key'
const KEYS = { current: 'sig_current_tracing', next: 'sig_next_tracing' }

let otlp: OtlpReceiver
let mail: Awaited<ReturnType<typeof startEmailApi>>
let qstash: QStashStandIn
let dbUrl: string
let db: postgres.Sql

beforeAll(async () => {
  otlp = await startOtlpReceiver()
  mail = await startEmailApi({ apiKey: MAIL_KEY })
  qstash = await startQStash({ token: 'tracing-qstash-token', currentSigningKey: KEYS.current, nextSigningKey: KEYS.next })
  dbUrl = await migratedDatabase('tracing')
  db = postgres(dbUrl, { max: 2, onnotice: () => {} })
})

afterAll(async () => {
  await otlp?.close()
  await mail?.close()
  await qstash?.close()
  await db?.end()
})

const hex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')

/** A client's W3C trace context: its trace id and the id of its own (client) span. */
function clientContext() {
  const traceId = hex(16)
  const spanId = hex(8)
  return { traceId, spanId, header: `00-${traceId}-${spanId}-01` }
}

function settings(service: string, extra: Record<string, string> = {}) {
  return {
    DATABASE_URL: dbUrl,
    JWT_SECRET: 'tracing-secret-0123456789abcdef0123',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    EMAIL_API_URL: mail.url,
    EMAIL_API_KEY: MAIL_KEY,
    EMAIL_FROM: 'shop@example.test',
    JOB_POLL_MS: '50',
    JOB_BACKOFF_BASE_MS: '20',
    RATE_LIMIT_AUTH: '1000/60',
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_SERVICE_NAME: service,
    ...extra,
  }
}

/** A client of one running server. */
function client(server: AppServer) {
  const call = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}${path}`, {
      method,
      headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  const json = async <T>(res: Response, status: number) => {
    expect(res.status, await res.clone().text()).toBe(status)
    return (await res.json()) as T
  }
  return {
    call,
    json,
    async setUp(tag: string) {
      // A Worker ensures its admin after its first answer: the first login may come before it.
      const admin = await adminToken(server.url, ADMIN)
      const buyer = (
        await json<{ accessToken: string }>(
          await call('POST', '/v1/auth/signup', { email: `${tag}@example.test`, password: 'trace buyer password', name: tag }),
          201,
        )
      ).accessToken
      const product = (
        await json<{ id: string }>(
          await call(
            'POST',
            '/v1/products',
            { sku: `T-${tag}`, name: 'Traced', priceCents: 500, stock: 100, category: 't' },
            { Authorization: `Bearer ${admin}` },
          ),
          201,
        )
      ).id
      return { admin, buyer, product }
    },
    /** Checkout, then pay, both with `headers`; resolves with the order's id once its confirmation email is sent. */
    async checkoutAndPay(who: { buyer: string; product: string }, key: string, paymentToken: string, headers: Record<string, string>) {
      const auth = { Authorization: `Bearer ${who.buyer}`, ...headers }
      const order = await json<{ id: string }>(
        await call('POST', '/v1/orders', { items: [{ productId: who.product, quantity: 1 }] }, { ...auth, 'Idempotency-Key': `o-${key}` }),
        201,
      )
      await json(await call('POST', `/v1/orders/${order.id}/pay`, { paymentToken }, { ...auth, 'Idempotency-Key': `p-${key}` }), 202)
      await vi.waitFor(
        async () => {
          const [row] = await db`select status from jobs where name = 'email.order_paid' and payload->>'orderId' = ${order.id}`
          if (row?.status !== 'succeeded') throw new Error('the confirmation email is not sent yet')
        },
        { timeout: 20_000, interval: 100 },
      )
      return order.id
    },
  }
}

/** The spans of one trace, with the ancestry of each. */
function traceOf(spans: ReceivedSpan[], traceId: string) {
  const inTrace = spans.filter((s) => s.traceId === traceId)
  const byId = new Map(inTrace.map((s) => [s.spanId, s]))
  const ancestors = (s: ReceivedSpan): ReceivedSpan[] => {
    const out: ReceivedSpan[] = []
    for (let p = byId.get(s.parentSpanId); p; p = byId.get(p.parentSpanId)) out.push(p)
    return out
  }
  const named = (name: string) => inTrace.filter((s) => s.name === name)
  const one = (name: string) => {
    const found = named(name)
    expect(
      found.map((s) => s.name),
      `exactly one ${name} in ${inTrace.map((s) => s.name).join(', ')}`,
    ).toEqual([name])
    return found[0]!
  }
  /** Whether `ancestor` is `s` or above it. */
  const under = (s: ReceivedSpan | undefined, ancestor: ReceivedSpan) =>
    s !== undefined && (s.spanId === ancestor.spanId || ancestors(s).some((a) => a.spanId === ancestor.spanId))
  return { spans: inTrace, byId, ancestors, under, named, one }
}

/** The checkout and pay requests of a client that traces: both children of its span, with route, status and request id. */
function clientRequests(t: ReturnType<typeof traceOf>, clientSpanId: string) {
  const checkout = t.one('POST /v1/orders')
  const pay = t.one('POST /v1/orders/:id/pay')
  for (const s of [checkout, pay]) {
    expect(s.parentSpanId).toBe(clientSpanId)
    expect(s.kind).toBe(2)
    expect(typeof s.attributes['http.request.id']).toBe('string')
  }
  expect(checkout.attributes).toMatchObject({ 'http.route': '/v1/orders', 'http.response.status_code': 201 })
  expect(pay.attributes).toMatchObject({ 'http.route': '/v1/orders/:id/pay', 'http.response.status_code': 202 })
  return { checkout, pay }
}

/** The span a stored traceparent names. */
const spanIdOf = (traceparent: string | null | undefined) => traceparent?.split('-')[2]

/** Spans whose job span points at a job whose order is `orderId`: the job id is in the jobs table. */
async function jobIdsOf(orderId: string) {
  const rows = await db`select id, name, traceparent from jobs where payload->>'orderId' = ${orderId}`
  return new Map(rows.map((r) => [r.name as string, { id: r.id as string, traceparent: r.traceparent as string | null }]))
}

/** The request log line of a request id, as the server printed it. */
function requestLine(server: AppServer, requestId: string): Record<string, unknown> | undefined {
  for (const line of server.output().split('\n')) {
    if (!line.includes(requestId) || !line.includes('"msg":"request"')) continue
    return JSON.parse(line) as Record<string, unknown>
  }
  return undefined
}

describe.each(['bun', 'node'] as const)('tracing on %s with the embedded runner', (runtime) => {
  const service = `edgeshop-${runtime}-embedded`
  let server: AppServer
  const client0 = clientContext()
  const malformed = `00-${hex(16)}-${'0'.repeat(16)}-01`
  let tracedOrder: string
  let plainOrder: string
  let malformedRequestId: string
  let continuedRequestId: string
  const laneRequestIds: { hit: string; traced: string } = { hit: '', traced: '' }
  let adminJobs: { id: string; name: string; traceId: string | null }[]
  let spans: ReceivedSpan[]

  beforeAll(async () => {
    server = await startAppServer(runtime, settings(service))
    expect(server.output()).toContain('tracing on')
    const c = client(server)
    const who = await c.setUp(`${runtime}-embedded`)
    // A client that traces: its checkout and its payment carry its context, and tok_flaky fails the capture twice.
    tracedOrder = await c.checkoutAndPay(who, `${runtime}-traced`, 'tok_flaky', { traceparent: client0.header })
    // A client that does not: the payment starts its own trace.
    plainOrder = await c.checkoutAndPay(who, `${runtime}-plain`, 'tok_ok', {})
    const continued = await c.call('GET', `/v1/orders/${tracedOrder}`, undefined, {
      Authorization: `Bearer ${who.buyer}`,
      traceparent: client0.header,
    })
    expect(continued.status).toBe(200)
    continuedRequestId = continued.headers.get('x-request-id')!
    const bad = await c.call('GET', `/v1/orders/${tracedOrder}`, undefined, {
      Authorization: `Bearer ${who.buyer}`,
      traceparent: malformed,
    })
    expect(bad.status).toBe(200)
    malformedRequestId = bad.headers.get('x-request-id')!
    // The hot read: the first read fills L1, the second is an L1 hit the read lane answers, the third carries a traceparent.
    const read = (headers: Record<string, string> = {}) => c.call('GET', `/v1/products/${who.product}`, undefined, headers)
    expect((await read()).status).toBe(200)
    laneRequestIds.hit = (await read()).headers.get('x-request-id')!
    laneRequestIds.traced = (await read({ traceparent: client0.header })).headers.get('x-request-id')!
    adminJobs = (
      await c.json<{ items: typeof adminJobs }>(
        await c.call('GET', '/v1/admin/jobs?limit=100', undefined, { Authorization: `Bearer ${who.admin}` }),
        200,
      )
    ).items
    // The spans still batched are exported at the graceful stop.
    expect(await server.stop()).toBe(0)
    spans = otlp.spans().filter((s) => s.service === service)
  }, 120_000)

  it('continues the client’s trace through checkout, pay, the capture job with its retries and the email job', async () => {
    const t = traceOf(spans, client0.traceId)
    const { checkout, pay } = clientRequests(t, client0.spanId)

    const jobs = await jobIdsOf(tracedOrder)
    // The job rows carry the context of the transaction that wrote them: its span, under the request's.
    const expiryParent = t.byId.get(spanIdOf(jobs.get('order.expire')?.traceparent)!)
    const captureParent = t.byId.get(spanIdOf(jobs.get('payment.capture')?.traceparent)!)
    expect(expiryParent?.name).toBe('transaction')
    expect(captureParent?.name).toBe('transaction')
    expect(t.under(expiryParent, checkout)).toBe(true)
    expect(t.under(captureParent, pay)).toBe(true)

    // tok_flaky: two failed attempts and a capture, each a span of its own under the context stored with the job.
    const captures = t.named('job payment.capture').sort((a, b) => Number(a.startNs - b.startNs))
    expect(captures.map((s) => [s.attributes['job.attempt'], s.statusCode, s.parentSpanId])).toEqual([
      [1, 2, captureParent!.spanId],
      [2, 2, captureParent!.spanId],
      [3, 0, captureParent!.spanId],
    ])
    for (const capture of captures) expect(capture.attributes['job.id']).toBe(jobs.get('payment.capture')?.id)
    // An admin's list of jobs shows the trace of each.
    for (const name of ['order.expire', 'payment.capture', 'email.order_paid'])
      expect(adminJobs.find((j) => j.id === jobs.get(name)?.id)?.traceId, name).toBe(client0.traceId)
    // The log lines of the failed attempts carry the trace id: from "my order never got paid" to its trace.
    const retries = server
      .output()
      .split('\n')
      .filter((l) => l.includes('job failed; will retry') && l.includes(jobs.get('payment.capture')!.id))
    expect(retries.map((l) => (JSON.parse(l) as { traceId?: string }).traceId)).toEqual([client0.traceId, client0.traceId])
    const email = t.one('job email.order_paid')
    // The checkout-and-pay's requests are ancestors of the capture and of the email job.
    expect(email.parentSpanId).toBe(captures[2]!.spanId)
    for (const job of [...captures, email]) expect(t.under(job, pay)).toBe(true)
    // Outbound calls: the payment provider under each capture attempt that reached it, the email API under the email job.
    const payments = t.named('payment capture')
    expect(payments.length).toBe(3)
    for (const p of payments) expect(captures.map((s) => s.spanId)).toContain(p.parentSpanId)
    const sent = t.one('email API send')
    expect(sent.parentSpanId).toBe(email.spanId)
    expect(sent.attributes['http.response.status_code']).toBe(200)

    // Database statements: the checkout's transaction and its one statement (a CTE), the capture's reads and writes;
    // named by operation and table, with no text and no parameters.
    const children = (parent: ReceivedSpan) => t.spans.filter((s) => s.parentSpanId === parent.spanId).map((s) => s.name)
    const checkoutTx = t.spans.find((s) => s.parentSpanId === checkout.spanId && s.name === 'transaction')!
    expect(checkoutTx).toBeDefined()
    expect(children(checkoutTx)).toContain('with')
    expect(children(captures[2]!)).toEqual(expect.arrayContaining(['select orders', 'update orders', 'payment capture']))
    for (const s of t.spans.filter((s) => s.attributes['db.system.name'] === 'postgresql'))
      expect(Object.keys(s.attributes).sort()).toEqual(
        s.name === 'transaction' ? ['db.system.name'] : expect.arrayContaining(['db.operation.name', 'db.system.name']),
      )
    for (const s of t.spans) for (const v of Object.values(s.attributes)) expect(String(v)).not.toContain('tok_flaky')

    // One connected trace: every span's parent is in it, but for the requests' (the client's own span).
    for (const s of t.spans) if (s.parentSpanId !== client0.spanId) expect(t.byId.has(s.parentSpanId), `${s.name}'s parent`).toBe(true)
  })

  it('makes the payment of an untraced client one trace of its own, down to the email', async () => {
    const jobs = await jobIdsOf(plainOrder)
    const capture = spans.find((s) => s.name === 'job payment.capture' && s.attributes['job.id'] === jobs.get('payment.capture')?.id)!
    expect(capture).toBeDefined()
    const t = traceOf(spans, capture.traceId)
    const pay = t.one('POST /v1/orders/:id/pay')
    expect(pay.parentSpanId).toBe('')
    const email = t.one('job email.order_paid')
    expect(t.ancestors(email).map((s) => s.name)).toEqual(['job payment.capture', 'transaction', 'POST /v1/orders/:id/pay'])
    // The checkout was another request, without a client context: another trace.
    expect(t.named('POST /v1/orders')).toEqual([])
  })

  it('continues a well-formed client traceparent and logs the trace id beside the request id', () => {
    const line = requestLine(server, continuedRequestId)
    expect(line).toMatchObject({ requestId: continuedRequestId, traceId: client0.traceId, route: '/v1/orders/:id' })
    const span = spans.find((s) => s.attributes['http.request.id'] === continuedRequestId)
    expect(span).toMatchObject({ traceId: client0.traceId, parentSpanId: client0.spanId, name: 'GET /v1/orders/:id' })
  })

  it('leaves the read lane’s L1 hits without a span, unless the request carries a traceparent', () => {
    expect(requestLine(server, laneRequestIds.hit)).toMatchObject({ route: '/v1/products/:id', status: 200 })
    expect(spans.find((s) => s.attributes['http.request.id'] === laneRequestIds.hit)).toBeUndefined()
    const traced = spans.find((s) => s.attributes['http.request.id'] === laneRequestIds.traced)
    expect(traced).toMatchObject({ traceId: client0.traceId, parentSpanId: client0.spanId, name: 'GET /v1/products/:id' })
  })

  it('ignores a malformed traceparent: the request starts a trace of its own', () => {
    const span = spans.find((s) => s.attributes['http.request.id'] === malformedRequestId)
    expect(span).toBeDefined()
    expect(span!.parentSpanId).toBe('')
    expect(malformed).not.toContain(span!.traceId)
    expect(requestLine(server, malformedRequestId)).toMatchObject({ requestId: malformedRequestId, traceId: span!.traceId })
  })
})

describe('tracing on workerd (wrangler dev) with the embedded runner', () => {
  const service = 'edgeshop-workerd-embedded'
  const client0 = clientContext()
  let server: AppServer
  let order: string
  let buyer: string
  let product: string
  let spans: ReceivedSpan[]

  beforeAll(async () => {
    server = await startAppServer('workerd', settings(service, { PAYMENT_PROVIDER: 'simulated' }))
    const c = client(server)
    const who = await c.setUp('workerd-embedded')
    buyer = who.buyer
    product = who.product
    // The second read is an L1 hit the read lane answers, before any route.
    for (let i = 0; i < 2; i++) expect((await c.call('GET', `/v1/products/${product}`)).status).toBe(200)
    // Without QStash a Worker runs a job right after the request that made it (waitUntil), and its follow-ups with it.
    order = await c.checkoutAndPay(who, 'workerd-traced', 'tok_ok', { traceparent: client0.header })
    // Each invocation exports its own spans once it and its waitUntil work are done: no flush at a stop to wait for.
    await vi.waitFor(() => expect(otlp.spans().filter((s) => s.service === service && s.name === 'email API send')).toHaveLength(1), {
      timeout: 20_000,
      interval: 100,
    })
    spans = otlp.spans().filter((s) => s.service === service)
    await server.stop()
  }, 120_000)

  it('continues the client’s trace through checkout, pay, the capture job and the email job, one connected trace', async () => {
    const t = traceOf(spans, client0.traceId)
    const { pay } = clientRequests(t, client0.spanId)

    const jobs = await jobIdsOf(order)
    const captureParent = t.byId.get(spanIdOf(jobs.get('payment.capture')?.traceparent)!)
    expect(captureParent?.name).toBe('transaction')
    expect(t.under(captureParent, pay)).toBe(true)
    const capture = t.one('job payment.capture')
    expect(capture.parentSpanId).toBe(captureParent!.spanId)
    expect(capture.attributes['job.id']).toBe(jobs.get('payment.capture')?.id)
    expect(t.one('payment capture').parentSpanId).toBe(capture.spanId)
    const email = t.one('job email.order_paid')
    expect(email.parentSpanId).toBe(capture.spanId)
    expect(t.one('email API send').parentSpanId).toBe(email.spanId)
    expect(t.spans.filter((s) => s.parentSpanId === capture.spanId).map((s) => s.name)).toEqual(
      expect.arrayContaining(['select orders', 'update orders', 'payment capture']),
    )
    for (const s of t.spans) if (s.parentSpanId !== client0.spanId) expect(t.byId.has(s.parentSpanId), `${s.name}'s parent`).toBe(true)
  })

  it('exports no request header: no bearer token, no cookie in any span', () => {
    expect(spans.length).toBeGreaterThan(10)
    for (const s of spans) {
      expect(Object.keys(s.attributes).filter((k) => k.includes('header'))).toEqual([])
      for (const v of Object.values(s.attributes)) expect(String(v)).not.toContain(buyer)
    }
  })

  it('names each request by method and route pattern, or by method alone when the read lane answered it', () => {
    const requests = spans.filter((s) => s.kind === 2)
    for (const s of requests) expect(s.name).toBe(`${s.attributes['http.request.method']} ${s.attributes['http.route'] ?? ''}`.trim())
    const reads = requests.filter((s) => s.attributes['url.path'] === `/v1/products/${product}`)
    expect(reads.map((s) => s.name).sort()).toEqual(['GET', 'GET /v1/products/:id'])
  })
})

describe('tracing with QStash delivering the jobs (Node)', () => {
  const service = 'edgeshop-node-qstash'
  const client0 = clientContext()
  let server: AppServer
  let order: string
  let spans: ReceivedSpan[]

  beforeAll(async () => {
    server = await startAppServer('node', (port) =>
      settings(service, {
        QSTASH_URL: qstash.url,
        QSTASH_TOKEN: qstash.token,
        QSTASH_CURRENT_SIGNING_KEY: KEYS.current,
        QSTASH_NEXT_SIGNING_KEY: KEYS.next,
        PUBLIC_URL: `http://127.0.0.1:${port}`,
      }),
    )
    const c = client(server)
    const who = await c.setUp('node-qstash')
    order = await c.checkoutAndPay(who, 'node-qstash', 'tok_ok', { traceparent: client0.header })
    expect(await server.stop()).toBe(0)
    spans = otlp.spans().filter((s) => s.service === service)
  }, 120_000)

  it('runs each delivered job as a child of the context stored with it, and the deliveries join the trace', async () => {
    const t = traceOf(spans, client0.traceId)
    const pay = t.one('POST /v1/orders/:id/pay')
    const capture = t.one('job payment.capture')
    const email = t.one('job email.order_paid')
    const jobs = await jobIdsOf(order)
    expect(capture.parentSpanId).toBe(spanIdOf(jobs.get('payment.capture')?.traceparent))
    expect(t.under(capture, pay)).toBe(true)
    expect(email.parentSpanId).toBe(capture.spanId)
    expect(spanIdOf(jobs.get('email.order_paid')?.traceparent)).toBe(capture.spanId)
    // Publishing is a span of the work that handed the job over (the checkout's order.expire too, delivered much later);
    // the delivery's request span joins the trace through the forwarded traceparent.
    const publishes = t.named('qstash v2/publish')
    expect(publishes.map((s) => t.byId.get(s.parentSpanId)?.name).sort()).toEqual([
      'POST /v1/orders',
      'POST /v1/orders/:id/pay',
      'job payment.capture',
    ])
    for (const s of publishes) expect(s.attributes['http.response.status_code']).toBe(200)
    const deliveries = t.named('POST /internal/jobs/:name')
    expect(deliveries.map((s) => s.parentSpanId).sort()).toEqual([capture.parentSpanId, capture.spanId].sort())
    for (const s of t.spans) if (s.parentSpanId !== client0.spanId) expect(t.byId.has(s.parentSpanId), `${s.name}'s parent`).toBe(true)
  })
})

describe('cache tiers and Upstash calls (Node, with Redis through the Upstash REST stand-in)', () => {
  const service = 'edgeshop-node-cache'
  const client0 = clientContext()
  let redis: RedisServerHandle
  let rest: UpstashRestHandle
  let product: string
  let spans: ReceivedSpan[]

  beforeAll(async () => {
    redis = await startRedisServer()
    rest = await startUpstashRest({ redisPort: redis.port, token: 'tracing-upstash-token' })
    const server = await startAppServer(
      'node',
      settings(service, { UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: rest.token, CACHE_L1_TTL_MS: '100' }),
    )
    const c = client(server)
    const who = await c.setUp('node-cache')
    product = who.product
    const traced = { traceparent: client0.header }
    expect((await c.call('POST', '/v1/auth/login', ADMIN, traced)).status).toBe(200)
    const read = () => c.call('GET', `/v1/products/${product}`, undefined, traced)
    // Cold: a miss in both tiers, loaded from PostgreSQL and left in Redis; at once again: an L1 hit.
    expect((await read()).status).toBe(200)
    expect((await read()).status).toBe(200)
    // Once this process's copy is past its 100 ms, the read finds Redis's.
    await vi.waitFor(
      async () => {
        expect((await read()).status).toBe(200)
        const metrics = await (await c.call('GET', '/metrics')).text()
        expect(metrics).toMatch(/edgeshop_cache_lookups_total\{tier="l2",result="hit"\} [1-9]/)
      },
      { timeout: 10_000, interval: 150 },
    )
    expect(await server.stop()).toBe(0)
    spans = otlp.spans().filter((s) => s.service === service)
  }, 120_000)

  afterAll(async () => {
    await rest?.close()
    await redis?.stop()
  })

  it('makes a lookup that misses L1 a cache load span with what L2 answered, and each Upstash call a span', () => {
    const t = traceOf(spans, client0.traceId)
    const children = (parent: ReceivedSpan) => t.spans.filter((s) => s.parentSpanId === parent.spanId)
    // The rate limiter's script (or scripts, sent as one pipeline) for the login, under the login's request span.
    const login = t.one('POST /v1/auth/login')
    const limiter = children(login).find((s) => s.name.startsWith('redis '))
    expect(limiter?.name).toMatch(/^redis (EVAL|EVALSHA|PIPELINE)$/)
    const reads = t.named('GET /v1/products/:id').sort((a, b) => Number(a.startNs - b.startNs))
    expect(reads.length).toBeGreaterThanOrEqual(3)
    const [cold, hot] = reads
    const coldLoad = children(cold!).find((s) => s.name === 'cache load')!
    // Just created: Redis holds the creation's tombstone, which no older load may overwrite.
    expect(coldLoad.attributes).toMatchObject({ 'cache.l1': 'miss', 'cache.l2': 'tombstone' })
    expect(children(coldLoad).map((s) => s.name)).toEqual(expect.arrayContaining(['redis GET', 'select products']))
    for (const s of t.named('redis GET'))
      expect(s.attributes).toMatchObject({
        'db.system.name': 'redis',
        'db.operation.name': 'GET',
        'server.address': new URL(rest.url).host,
      })
    // The hot read: no load, an event on its request span.
    expect(children(hot!).map((s) => s.name)).not.toContain('cache load')
    expect(hot!.events).toContainEqual(
      expect.objectContaining({ name: 'cache hit', attributes: expect.objectContaining({ 'cache.tier': 'l1' }) }),
    )
    // A read that found Redis's copy: no statement under its load.
    const fromRedis = reads.flatMap(children).filter((s) => s.name === 'cache load' && s.attributes['cache.l2'] === 'hit')
    expect(fromRedis.length).toBeGreaterThanOrEqual(1)
    for (const load of fromRedis) expect(children(load).map((s) => s.name)).toEqual(['redis GET'])
    // Keys and values stay out: no span names the product's id but the cache's own key.
    for (const s of t.spans.filter((s) => s.name.startsWith('redis '))) expect(JSON.stringify(s.attributes)).not.toContain(product)
  })
})

describe('sampling (Bun, parentbased_traceidratio at 0)', () => {
  const service = 'edgeshop-bun-sampled'
  const sampled = clientContext()
  const unsampled = { ...clientContext(), header: '' }
  unsampled.header = `00-${unsampled.traceId}-${unsampled.spanId}-00`
  const orders: Record<'root' | 'sampled' | 'unsampled', string> = { root: '', sampled: '', unsampled: '' }
  let spans: ReceivedSpan[]

  beforeAll(async () => {
    const server = await startAppServer(
      'bun',
      settings(service, { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' }),
    )
    const c = client(server)
    const who = await c.setUp('bun-sampled')
    orders.root = await c.checkoutAndPay(who, 'sampled-root', 'tok_ok', {})
    orders.sampled = await c.checkoutAndPay(who, 'sampled-yes', 'tok_ok', { traceparent: sampled.header })
    orders.unsampled = await c.checkoutAndPay(who, 'sampled-no', 'tok_ok', { traceparent: unsampled.header })
    expect(await server.stop()).toBe(0)
    spans = otlp.spans().filter((s) => s.service === service)
  }, 120_000)

  it('keeps the decision across the outbox: a sampled caller’s trace is whole, an unsampled one leaves nothing', async () => {
    // Roots are decided by the ratio (0: none); a caller's decision is followed, and stored with the job for its runs.
    const t = traceOf(spans, sampled.traceId)
    expect(t.named('job payment.capture')).toHaveLength(1)
    expect(t.named('job email.order_paid')).toHaveLength(1)
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([sampled.traceId]))
    const stored = await jobIdsOf(orders.unsampled)
    expect(stored.get('payment.capture')?.traceparent).toMatch(new RegExp(`^00-${unsampled.traceId}-[0-9a-f]{16}-00$`))
    expect(stored.get('email.order_paid')?.traceparent).toMatch(new RegExp(`^00-${unsampled.traceId}-[0-9a-f]{16}-00$`))
    expect((await jobIdsOf(orders.root)).get('payment.capture')?.traceparent).toMatch(/-00$/)
  })
})

describe.each(['bun', 'node'] as const)('tracing off on %s', (runtime) => {
  it('exports nothing without OTEL_EXPORTER_OTLP_ENDPOINT, and says so at start', async () => {
    const before = otlp.exports
    const { OTEL_EXPORTER_OTLP_ENDPOINT: _, ...off } = settings(`edgeshop-${runtime}-off`)
    const server = await startAppServer(runtime, off)
    const res = await fetch(`${server.url}/healthz`, { headers: { traceparent: clientContext().header } })
    expect(res.status).toBe(200)
    const requestId = res.headers.get('x-request-id')!
    expect(await server.stop()).toBe(0)
    expect(server.output()).toContain('"msg":"tracing off"')
    const line = requestLine(server, requestId)
    expect(line).toMatchObject({ requestId })
    expect(line).not.toHaveProperty('traceId')
    expect(otlp.exports).toBe(before)
  }, 60_000)
})

describe('the SDK is loaded only when spans go somewhere (Bun)', () => {
  /** The SDK modules a Bun process running edgeshop loaded (test/support/sdk-probe.ts). */
  async function sdkModules(env: Record<string, string>): Promise<string[]> {
    const { code, out } = await runCommand(process.env.BUN_BIN ?? 'bun', ['test/support/sdk-probe.ts'], env, 60_000)
    expect(code, out).toBe(0)
    const line = out.split('\n').find((l) => l.startsWith('{"sdkModules"'))
    expect(line, out).toBeDefined()
    return (JSON.parse(line!) as { sdkModules: string[] }).sdkModules
  }

  it('loads none of it without OTEL_EXPORTER_OTLP_ENDPOINT, and the SDK and @hono/otel with it', async () => {
    const { OTEL_EXPORTER_OTLP_ENDPOINT: _, ...off } = settings('edgeshop-probe-off')
    expect(await sdkModules(off)).toEqual([])
    const on = await sdkModules(settings('edgeshop-probe-on'))
    expect(on.some((m) => m.includes('@opentelemetry/sdk-trace/'))).toBe(true)
    expect(on.some((m) => m.includes('@hono/otel/'))).toBe(true)
  }, 120_000)
})
