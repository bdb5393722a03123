import { spawnSync } from 'node:child_process'
import { hc } from 'hono/client'
import { describe, expect, inject, it } from 'vitest'
import type { AppType } from '../../src/app.ts'
import { expectProblem } from './helpers.ts'

/*
 * The system routes and the conventions every answer follows, checked over
 * plain HTTP against each target (see vitest.config.ts).
 */

const base = inject('baseUrl')
const target = inject('target')
const get = (path: string, init?: RequestInit) => fetch(`${base}${path}`, init)

describe('system routes', () => {
  it('GET /healthz answers 200 without touching a dependency', async () => {
    const res = await get('/healthz')
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({ status: 'ok' })
    expect(res.headers.get('cache-control')).toBe('no-store')
  })

  it('GET /readyz reports the database, the cache and the queue', async () => {
    const res = await get('/readyz')
    expect(res.status).toBe(200)
    const cache = inject('redis') ? 'ok' : 'disabled'
    const queue = ['node', 'workerd'].includes(target) ? 'ok' : 'embedded'
    expect(await res.json()).toEqual({ status: 'ready', checks: { db: 'ok', cache, queue } })
  })

  it('is callable through the typed hc client', async () => {
    const client = hc<AppType>(base)
    const health = await client.healthz.$get()
    expect(health.status).toBe(200)
    const body = await health.json()
    expect(body.status).toBe('ok')

    const ready = await client.readyz.$get()
    const readiness = await ready.json()
    expect(readiness.checks.db).toBe('ok')
  })

  it('GET /openapi.json is an OpenAPI 3.1 document of the routes', async () => {
    const res = await get('/openapi.json')
    expect(res.status).toBe(200)
    const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown>; components: { schemas: Record<string, unknown> } }
    expect(doc.openapi).toMatch(/^3\.1\./)
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/healthz', '/readyz', '/metrics']))
    expect(doc.components.schemas).toHaveProperty('Problem')
  })

  it('GET /docs renders the API reference from that document', async () => {
    const res = await get('/docs')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/html/)
    const html = await res.text()
    expect(html).toContain('edgeshop API')
    expect(html).toContain('/readyz')
    expect(html).toContain('id="error-validation_failed"')
    expect(html).not.toMatch(/<script/i)
  })

  it('GET /metrics is Prometheus text on Bun and Node, open to loopback when no token is set', async () => {
    const res = await get('/metrics')
    if (target === 'workerd') {
      await expectProblem(res, 404, 'not_found')
      return
    }
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    const text = await res.text()
    expect(text).toMatch(/^# TYPE edgeshop_http_requests_total counter$/m)
    expect(text).toMatch(/^edgeshop_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+$/m)
    expect(text).toMatch(/^# TYPE edgeshop_http_request_duration_seconds histogram$/m)
    if (target !== 'embedded') expect(text).toMatch(/^edgeshop_db_pool_max 10$/m)
    // Prometheus's own linter finds nothing to say of a live scrape.
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
    expect(lint.error).toBeUndefined()
    expect(`${lint.stdout}${lint.stderr}`).toBe('')
    expect(lint.status).toBe(0)
  })
})

describe('conventions', () => {
  it('gives every answer a request id, keeping a sane one from the caller', async () => {
    const fresh = await get('/healthz')
    expect(fresh.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)

    const mine = await get('/healthz', { headers: { 'X-Request-Id': 'client-trace-42' } })
    expect(mine.headers.get('x-request-id')).toBe('client-trace-42')

    const insane = await get('/healthz', { headers: { 'X-Request-Id': 'x'.repeat(300) } })
    expect(insane.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    const injected = await get('/healthz', { headers: { 'X-Request-Id': 'a b<script>' } })
    expect(injected.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
  })

  it('sends security headers and no X-Powered-By', async () => {
    const res = await get('/healthz')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    expect(res.headers.get('x-frame-options')).toBe('DENY')
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'")
    expect(res.headers.get('referrer-policy')).toBe('no-referrer')
    expect(res.headers.get('strict-transport-security')).toMatch(/max-age=\d+/)
    expect(res.headers.get('x-powered-by')).toBeNull()
  })

  it('sends no CORS headers when no origin is configured', async () => {
    const res = await get('/healthz', { headers: { Origin: 'https://evil.example' } })
    expect(res.headers.get('access-control-allow-origin')).toBeNull()
  })

  it('answers an unknown route with 404 problem details', async () => {
    const res = await get('/v1/no-such-thing', { headers: { 'X-Request-Id': 'trace-404' } })
    const problem = await expectProblem(res, 404, 'not_found')
    expect(problem.requestId).toBe('trace-404')
    expect(problem.type).toBe('/docs#error-not_found')
  })

  it('answers a wrong method with 405 and Allow', async () => {
    const res = await get('/readyz', { method: 'DELETE' })
    await expectProblem(res, 405, 'method_not_allowed')
    expect(res.headers.get('allow')).toContain('GET')
  })

  it('answers a body over the limit with 413 before reading it', async () => {
    const res = await get('/v1/anything', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ blob: 'x'.repeat(70 * 1024) }),
    })
    await expectProblem(res, 413, 'payload_too_large')
  })

  it('answers HEAD like GET without a body', async () => {
    const res = await get('/healthz', { method: 'HEAD' })
    expect(res.status).toBe(200)
    expect(await res.text()).toBe('')
  })
})
