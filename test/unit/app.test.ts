import { createRoute, z } from '@hono/zod-openapi'
import { sql } from 'drizzle-orm'
import { hc } from 'hono/client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { AppType } from '../../src/app.ts'
import { AppError } from '../../src/core/errors.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { jsonBody, json as jsonResponse, problems } from '../../src/http/openapi.ts'
import { expectProblem } from '../contract/helpers.ts'
import { startSilentServer } from '../support/silent-server.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/*
 * The error pipeline and the conventions of API.md, through app.request():
 * the real app with extra routes that provoke each kind of failure.
 */

const Order = z.object({ name: z.string().min(2), qty: z.number().int().min(1), tags: z.array(z.string()).max(2) })

function withProbeRoutes(t: TestApp) {
  t.app.openapi(
    createRoute({
      method: 'post',
      path: '/probe/echo',
      request: { body: jsonBody(Order) },
      responses: { 200: jsonResponse(Order, 'echo'), ...problems('validation_failed', 'invalid_json') },
    }),
    (c) => c.json(c.req.valid('json'), 200),
  )
  t.app.get('/probe/crash', () => {
    throw new Error('secret internal detail: password=hunter2 at /srv/app.ts:12:3')
  })
  t.app.get('/probe/conflict', () => {
    throw new AppError('email_taken', 'That email is registered')
  })
  t.app.get('/probe/items/:id', (c) => c.text(c.req.param('id')))
  t.app.get('/probe/db', async (c) => {
    await c.var.scope.db.execute(sql`select 1`)
    return c.text('ok')
  })
  return t
}

const post = (t: TestApp, path: string, body: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }) =>
  t.app.request(path, { method: 'POST', body, headers })

describe('problem details for every error', () => {
  let t: TestApp
  beforeAll(async () => {
    t = withProbeRoutes(await createTestApp())
  })
  afterAll(() => t.close())

  it('400 invalid_json for a body that is not JSON', async () => {
    const res = await post(t, '/probe/echo', '{"name": "ab",')
    await expectProblem(res, 400, 'invalid_json')
  })

  it('400 validation_failed listing every bad field with its location', async () => {
    const res = await post(t, '/probe/echo', JSON.stringify({ name: 'a', qty: 0, tags: ['x', 'y', 'z'] }))
    const problem = await expectProblem(res, 400, 'validation_failed')
    expect(problem.errors?.map((e) => e.path).sort()).toEqual(['body.name', 'body.qty', 'body.tags'])
    for (const e of problem.errors ?? []) expect(e.message.length).toBeGreaterThan(0)
  })

  it('400 validation_failed for a missing body, 415 for a body that is not JSON', async () => {
    const missing = await t.app.request('/probe/echo', { method: 'POST' })
    const problem = await expectProblem(missing, 400, 'validation_failed')
    expect(problem.errors?.length).toBe(3)
    const form = await post(t, '/probe/echo', 'name=ab', { 'Content-Type': 'application/x-www-form-urlencoded' })
    await expectProblem(form, 415, 'unsupported_media_type')
  })

  it('accepts a valid body', async () => {
    const res = await post(t, '/probe/echo', JSON.stringify({ name: 'ab', qty: 2, tags: [] }))
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ name: 'ab', qty: 2, tags: [] })
  })

  it('domain errors keep their code, status and detail', async () => {
    const problem = await expectProblem(await t.app.request('/probe/conflict'), 409, 'email_taken')
    expect(problem.detail).toBe('That email is registered')
  })

  it('500 internal_error with nothing internal in the answer; the log has the detail and the request id', async () => {
    const res = await t.app.request('/probe/crash', { headers: { 'X-Request-Id': 'crash-1' } })
    const problem = await expectProblem(res, 500, 'internal_error')
    expect(JSON.stringify(problem)).not.toMatch(/hunter2|secret|app\.ts/)
    const logged = t.logs.find((l) => l.msg === 'unhandled error' && l.requestId === 'crash-1')
    expect(logged?.error).toMatch(/secret internal detail/)
  })

  it('413 payload_too_large for a body over the limit, with or without Content-Length', async () => {
    const big = JSON.stringify({ name: 'x'.repeat(70_000), qty: 1, tags: [] })
    await expectProblem(await post(t, '/probe/echo', big), 413, 'payload_too_large')
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(10_000)))
        controller.close()
      },
    })
    const chunked = await t.app.request('/probe/echo', {
      method: 'POST',
      body: stream,
      headers: { 'Content-Type': 'application/json' },
      duplex: 'half',
    } as RequestInit)
    await expectProblem(chunked, 413, 'payload_too_large')
  })

  it('405 with Allow for a known path and another method', async () => {
    const res = await t.app.request('/probe/echo', { method: 'GET' })
    await expectProblem(res, 405, 'method_not_allowed')
    expect(res.headers.get('allow')).toBe('POST')
  })

  it('writes one log line per request with method, route, status, duration and request id, and no secrets', async () => {
    const before = t.logs.length
    await t.app.request('/healthz', { headers: { Authorization: 'Bearer super-secret-token', 'X-Request-Id': 'log-1' } })
    const lines = t.logs.slice(before).filter((l) => l.msg === 'request')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ level: 'info', method: 'GET', route: '/healthz', status: 200, requestId: 'log-1' })
    expect(typeof lines[0]!.durationMs).toBe('number')
    expect(JSON.stringify(t.logs)).not.toContain('super-secret-token')
  })

  it('logs the route pattern, not the path', async () => {
    const before = t.logs.length
    await t.app.request('/probe/items/12345?token=abc')
    const line = t.logs.slice(before).find((l) => l.msg === 'request')
    expect(line?.route).toBe('/probe/items/:id')
    expect(JSON.stringify(line)).not.toMatch(/12345|abc/)
  })
})

describe('a database that is down', () => {
  it('answers 503 service_unavailable with Retry-After, within the bound, and no driver message', async () => {
    const t = withProbeRoutes(await createTestApp({ database: 'unreachable' }))
    const started = Date.now()
    const res = await t.app.request('/probe/db')
    const problem = await expectProblem(res, 503, 'service_unavailable')
    expect(Date.now() - started).toBeLessThan(2000)
    expect(res.headers.get('retry-after')).toBe('1')
    expect(JSON.stringify(problem)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/)

    const ready = await t.app.request('/readyz')
    expect(ready.status).toBe(503)
    expect(await ready.json()).toEqual({ status: 'unavailable', checks: { db: 'unavailable', cache: 'disabled', queue: 'embedded' } })
    await t.close()
  })

  describe('that accepts connections but never answers', () => {
    let silent: Awaited<ReturnType<typeof startSilentServer>>
    let port = 0
    beforeAll(async () => {
      silent = await startSilentServer()
      port = silent.port
    })
    afterAll(() => silent.close())

    it('/readyz answers 503 in under 2 s', async () => {
      const database = createPostgresDatabase({
        url: `postgres://edgeshop:x@127.0.0.1:${port}/edgeshop`,
        poolMax: 2,
        timeoutMs: 5000,
        statementTimeoutMs: 5000,
      })
      const t = await createTestApp({ database })
      const started = Date.now()
      const res = await t.app.request('/readyz')
      const elapsed = Date.now() - started
      expect(res.status).toBe(503)
      expect(elapsed).toBeLessThan(2000)
      void database.close().catch(() => {})
    })

    it('a route waits at most DATABASE_TIMEOUT_MS to connect, then 503', async () => {
      const database = createPostgresDatabase({
        url: `postgres://edgeshop:x@127.0.0.1:${port}/edgeshop`,
        poolMax: 2,
        timeoutMs: 400,
        statementTimeoutMs: 1000,
      })
      const t = withProbeRoutes(await createTestApp({ database }))
      const started = Date.now()
      await expectProblem(await t.app.request('/probe/db'), 503, 'service_unavailable')
      expect(Date.now() - started).toBeLessThan(1500)
      void database.close().catch(() => {})
    })
  })
})

describe('CORS', () => {
  let t: TestApp
  beforeAll(async () => {
    t = await createTestApp({ env: { CORS_ORIGINS: 'https://shop.example' } })
  })
  afterAll(() => t.close())

  it('allows a configured origin and exposes the headers clients need', async () => {
    const res = await t.app.request('/healthz', { headers: { Origin: 'https://shop.example' } })
    expect(res.headers.get('access-control-allow-origin')).toBe('https://shop.example')
    expect(res.headers.get('access-control-expose-headers')).toContain('X-Request-Id')
    expect(res.headers.get('vary')).toContain('Origin')
  })

  it('answers a preflight for a configured origin', async () => {
    const res = await t.app.request('/v1/orders', {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://shop.example',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'Idempotency-Key',
      },
    })
    expect(res.status).toBe(204)
    expect(res.headers.get('access-control-allow-methods')).toContain('POST')
    expect(res.headers.get('access-control-allow-headers')).toContain('Idempotency-Key')
  })

  it('gives any other origin nothing', async () => {
    const res = await t.app.request('/healthz', { headers: { Origin: 'https://evil.example' } })
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('/metrics guard', () => {
  it('with METRICS_TOKEN: 401 without or with a wrong token, 200 with it, from any peer', async () => {
    const t = await createTestApp({ env: { METRICS_TOKEN: 'metrics-token-0123456789' } })
    t.setPeer('203.0.113.9')
    const none = await t.app.request('/metrics')
    await expectProblem(none, 401, 'unauthorized')
    expect(none.headers.get('www-authenticate')).toBe('Bearer')
    await expectProblem(
      await t.app.request('/metrics', { headers: { Authorization: 'Bearer metrics-token-012345678' } }),
      401,
      'unauthorized',
    )
    const ok = await t.app.request('/metrics', { headers: { Authorization: 'Bearer metrics-token-0123456789' } })
    expect(ok.status).toBe(200)
    await t.close()
  })

  it('without a token: loopback peers only, whatever the headers say', async () => {
    const t = await createTestApp()
    expect((await t.app.request('/metrics')).status).toBe(200)
    t.setPeer('::ffff:127.0.0.1')
    expect((await t.app.request('/metrics')).status).toBe(200)
    t.setPeer('198.51.100.7')
    await expectProblem(await t.app.request('/metrics', { headers: { 'X-Forwarded-For': '127.0.0.1' } }), 403, 'forbidden')
    t.setPeer(undefined)
    await expectProblem(await t.app.request('/metrics'), 403, 'forbidden')
    await t.close()
  })

  it('counts requests by route and status, and reports latency as a histogram', async () => {
    const t = await createTestApp()
    await t.app.request('/healthz')
    await t.app.request('/healthz')
    await t.app.request('/nope')
    const text = await (await t.app.request('/metrics')).text()
    expect(text).toContain('edgeshop_http_requests_total{method="GET",route="/healthz",status="200"} 2')
    expect(text).toContain('edgeshop_http_requests_total{method="GET",route="unmatched",status="404"} 1')
    expect(text).toMatch(/edgeshop_http_request_duration_seconds_count\{route="\/healthz"\} 2/)
    expect(text).toMatch(/edgeshop_http_request_duration_seconds_bucket\{route="\/healthz",le="\+Inf"\} 2/)
    await t.close()
  })
})

describe('typed client', () => {
  it('hc<AppType> calls the app with typed answers', async () => {
    const t = await createTestApp()
    const client = hc<AppType>('http://edgeshop.test', {
      fetch: (input: RequestInfo | URL, init?: RequestInit) => t.app.request(input, init),
    })
    const res = await client.readyz.$get()
    expect(res.status).toBe(200)
    const body = await res.json()
    expect(body.checks.db).toBe('ok')
    await t.close()
  })
})
