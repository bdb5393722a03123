import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionBody } from '../contract/helpers.ts'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { METRICS_TOKEN, SECURITY_ADMIN, SECURITY_JWT_SECRET, unique } from './harness.ts'
import { loadDocument, type OpenApiDocument, type Operation, operations } from './openapi-model.ts'
import { exampleRequest, expectCode, expectSafeAnswer, type Fixtures } from './requests.ts'

/*
 * The HTTP surface of real Bun and Node servers, as a client sees it:
 *   API8  security headers, request ids and problem details on every answer of every route;
 *         CORS only for the configured origin
 *   API4  the body limit on every route that takes a body, with and without Content-Length,
 *         before authentication; a client that sends its body slowly holds no pooled connection
 */

const ORIGIN = 'https://shop.example'
const BODY_LIMIT = 64 * 1024

interface Target {
  server: AppServer
  doc: OpenApiDocument
  ops: Operation[]
  admin: string
  customer: SessionBody
  fx: Fixtures
}

const targets: Partial<Record<'bun' | 'node', Target>> = {}

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text()
  if (res.status !== status) throw new Error(`${res.status} ${text}`)
  return JSON.parse(text) as T
}

beforeAll(async () => {
  const url = await migratedDatabase('sec_surface')
  const env = {
    NODE_ENV: 'production',
    DATABASE_URL: url,
    // One connection: the slow-body test shows that reading a body holds none.
    DATABASE_POOL_MAX: '1',
    JWT_SECRET: SECURITY_JWT_SECRET,
    ADMIN_EMAIL: SECURITY_ADMIN.email,
    ADMIN_PASSWORD: SECURITY_ADMIN.password,
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
    CORS_ORIGINS: ORIGIN,
    METRICS_TOKEN,
    RATE_LIMIT_AUTH: '1000/60',
    LOG_LEVEL: 'warn',
  }
  const [bun, node] = await Promise.all([startAppServer('bun', env), startAppServer('node', env)])
  for (const [name, server] of [
    ['bun', bun],
    ['node', node],
  ] as const) {
    const post = (path: string, body: unknown, token?: string, headers: Record<string, string> = {}) =>
      fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}), ...headers },
        body: JSON.stringify(body),
      })
    const admin = (await json<SessionBody>(await post('/v1/auth/login', SECURITY_ADMIN), 200)).accessToken
    const customer = await json<SessionBody>(
      await post('/v1/auth/signup', { email: `${name}.${unique()}@example.test`, password: 'a perfectly fine password', name }),
      201,
    )
    const product = await json<{ id: string }>(
      await post('/v1/products', { sku: `HTTP-${unique()}`, name: 'Surface', priceCents: 100, stock: 100, category: 'surface' }, admin),
      201,
    )
    const order = await json<{ id: string }>(
      await post('/v1/orders', { items: [{ productId: product.id, quantity: 1 }] }, customer.accessToken, { 'Idempotency-Key': unique() }),
      201,
    )
    const doc = await loadDocument((path) => fetch(`${server.url}${path}`))
    targets[name] = {
      server,
      doc,
      ops: operations(doc),
      admin,
      customer,
      fx: {
        productId: product.id,
        orderId: order.id,
        jobId: '01a20000-0000-7000-8000-000000000001',
        jobName: 'payment.capture',
        refreshToken: customer.refreshToken,
      },
    }
  }
}, 120_000)

afterAll(async () => {
  await Promise.all(Object.values(targets).map((t) => t.server.stop()))
})

describe.each(['bun', 'node'] as const)('%s server', (runtime) => {
  const t = () => targets[runtime]!
  const call = (path: string, init: RequestInit = {}) => fetch(`${t().server.url}${path}`, init)
  const tokenFor = (op: Operation) => (op.access === 'admin' ? t().admin : op.access === 'customer' ? t().customer.accessToken : undefined)

  it('every route answers with the security headers, a request id and, for errors, problem details — with and without credentials', async () => {
    let answers = 0
    for (const op of t().ops) {
      const spec = exampleRequest(t().doc, op, t().fx)
      for (const token of [tokenFor(op), undefined]) {
        const headers = { ...spec.headers, ...(token ? { Authorization: `Bearer ${token}` } : {}) }
        await expectSafeAnswer(
          await call(spec.path, { method: spec.method, headers, body: spec.body }),
          `${op.id}${token ? '' : ' anonymous'}`,
        )
        answers++
      }
    }
    for (const [path, init] of [
      ['/openapi.json', {}],
      ['/docs', {}],
      ['/v1/no-such-route', {}],
      ['/healthz', { method: 'DELETE' }],
      ['/healthz', { method: 'HEAD' }],
      ['/v1/products', { method: 'PUT' }],
      ['/%E0%A4%A', {}],
      [`/v1/products/${'x'.repeat(2000)}`, {}],
    ] as const) {
      const res = await call(path, init)
      await expectSafeAnswer(res, `${init.method ?? 'GET'} ${path.slice(0, 40)}`)
      expect(res.status, path).toBeLessThan(500)
      answers++
    }
    expect(answers).toBeGreaterThanOrEqual(2 * t().ops.length + 8)
  })

  it('TRACE is refused as problem details, not echoed back', async () => {
    // fetch() will not send TRACE; node:http will.
    const answer = await new Promise<{ status: number; headers: Record<string, string>; text: string }>((resolve, reject) => {
      const req = httpRequest(new URL('/healthz', t().server.url), { method: 'TRACE', headers: { 'X-Secret-Probe': 'echo-me' } }, (res) => {
        let text = ''
        res.on('data', (d) => (text += d))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, text }))
      })
      req.on('error', reject)
      req.end()
    })
    expect(answer.status).toBe(405)
    expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(answer.text).not.toMatch(/echo-me|TRACE \/healthz/)
  })

  it('every route that takes a body answers 413 payload_too_large to one over the limit, before authentication, with or without Content-Length', async () => {
    const big = JSON.stringify({ blob: 'x'.repeat(BODY_LIMIT + 1024) })
    const bodied = t().ops.filter((o) => o.method !== 'GET')
    expect(bodied.length).toBeGreaterThanOrEqual(14)
    for (const op of bodied) {
      const path = exampleRequest(t().doc, op, t().fx).path
      const sized = await call(path, { method: op.method, headers: { 'Content-Type': 'application/json' }, body: big })
      await expectCode(sized, 413, 'payload_too_large', `${op.id} with Content-Length`)
      const chunks = new TextEncoder().encode(big)
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < chunks.length; i += 8192) controller.enqueue(chunks.slice(i, i + 8192))
          controller.close()
        },
      })
      const chunked = await call(path, {
        method: op.method,
        headers: { 'Content-Type': 'application/json' },
        body: stream,
        duplex: 'half',
      } as RequestInit)
      await expectCode(chunked, 413, 'payload_too_large', `${op.id} chunked`)
    }
  })

  it('CORS answers the configured origin only: every route, simple requests and preflights', async () => {
    for (const op of t().ops) {
      const spec = exampleRequest(t().doc, op, t().fx)
      const allowed = await call(spec.path, { method: spec.method, headers: { ...spec.headers, Origin: ORIGIN }, body: spec.body })
      expect(allowed.headers.get('access-control-allow-origin'), op.id).toBe(ORIGIN)
      expect(allowed.headers.get('access-control-allow-credentials'), op.id).toBeNull()
      expect(allowed.headers.get('vary') ?? '', op.id).toMatch(/origin/i)
      for (const origin of ['https://evil.example', 'null', `${ORIGIN}.evil.example`, 'https://shop.example:8443', 'http://shop.example']) {
        const other = await call(exampleRequest(t().doc, op, t().fx).path, {
          method: spec.method,
          headers: { ...spec.headers, Origin: origin },
          body: spec.body,
        })
        expect(other.headers.get('access-control-allow-origin'), `${op.id} from ${origin}`).toBeNull()
        const preflight = await call(spec.path, {
          method: 'OPTIONS',
          headers: { Origin: origin, 'Access-Control-Request-Method': op.method, 'Access-Control-Request-Headers': 'Authorization' },
        })
        expect(preflight.headers.get('access-control-allow-origin'), `preflight ${op.id} from ${origin}`).toBeNull()
      }
      const preflight = await call(spec.path, {
        method: 'OPTIONS',
        headers: { Origin: ORIGIN, 'Access-Control-Request-Method': op.method, 'Access-Control-Request-Headers': 'Authorization' },
      })
      expect(preflight.status, op.id).toBe(204)
      expect(preflight.headers.get('access-control-allow-origin'), op.id).toBe(ORIGIN)
    }
  })

  it('a client sending its body slowly holds no pooled connection: with a pool of one, other requests are served meanwhile', async () => {
    const { customer, admin } = t()
    // A product of its own: the route sweep above may have archived the fixture's.
    const created = await call('/v1/products', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${admin}` },
      body: JSON.stringify({ sku: `SLOW-${unique()}`, name: 'Slow', priceCents: 100, stock: 5, category: 'surface' }),
    })
    const product = await json<{ id: string }>(created, 201)
    const url = new URL('/v1/orders', t().server.url)
    const body = JSON.stringify({ items: [{ productId: product.id, quantity: 1 }] })
    const slow = new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        url,
        {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            'Content-Length': String(Buffer.byteLength(body)),
            Authorization: `Bearer ${customer.accessToken}`,
            'Idempotency-Key': `slow-${unique()}`,
          },
        },
        (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        },
      )
      req.on('error', reject)
      req.write(body.slice(0, 10))
      setTimeout(() => req.end(body.slice(10)), 2500)
    })
    await new Promise((r) => setTimeout(r, 300))
    // While the body trickles in, requests that need the database are answered at once.
    for (let i = 0; i < 3; i++) {
      const started = performance.now()
      const res = await call('/v1/orders?limit=1', { headers: { Authorization: `Bearer ${customer.accessToken}` } })
      expect(res.status).toBe(200)
      expect(performance.now() - started).toBeLessThan(1500)
    }
    expect(await slow).toBe(201)
  })
})
