import type { MiddlewareHandler } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { appLayers } from '../../src/app.ts'
import { productReadLane } from '../../src/features/catalog/routes.ts'
import { type CatalogService, createProduct, updateProduct } from '../../src/features/catalog/service.ts'
import type { AppEnv } from '../../src/http/context.ts'
import { type AppLayer, type EarlyRoute, plainAnswers } from '../../src/http/edge.ts'
import { expectProblem } from '../contract/helpers.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/*
 * `GET /v1/products/{id}` from L1 is answered before routing (the read
 * lane). Whichever path answers, the client, the log and /metrics must not
 * be able to tell: these tests compare the lane's answers with the routed
 * ones and check that everything the lane does not handle is routed.
 */

const catalog = (t: TestApp): CatalogService => ({
  db: t.services.scope().db,
  read: t.services.scope().read,
  cache: t.services.cache,
  currency: t.config.storeCurrency,
  waitUntil: () => {},
})

const withoutRequestId = (res: Response) => [...res.headers].filter(([name]) => name !== 'x-request-id')

describe('the product read lane', () => {
  let t: TestApp
  let id: string
  let lane: EarlyRoute
  /** The lane's answer to a request, as a Response (undefined: routed). */
  const ask = (path: string, init?: RequestInit) => {
    const req = new Request(`http://localhost${path}`, init)
    const answer = lane(req.method, req.url, (name) => req.headers.get(name))
    return answer && new Response(answer.body, answer)
  }

  beforeAll(async () => {
    t = await createTestApp()
    lane = productReadLane(t.services, plainAnswers, t.layers)!
    const row = await createProduct(catalog(t), {
      sku: 'LANE-1',
      name: 'Lane lamp',
      description: 'Bright',
      priceCents: 1250,
      stock: 4,
      category: 'lamps',
      active: true,
    })
    id = row.id
  })
  afterAll(() => t.close())

  it('answers only what L1 holds, and exactly what the routed read answers', async () => {
    expect(ask(`/v1/products/${id}`)).toBeUndefined()
    const routed = await t.app.request(`/v1/products/${id}`)
    const direct = ask(`/v1/products/${id}`)
    expect(direct).toBeInstanceOf(Response)
    const viaApp = await t.app.request(`/v1/products/${id}`)
    for (const res of [direct!, viaApp]) {
      expect(res.status).toBe(200)
      expect(withoutRequestId(res)).toEqual(withoutRequestId(routed))
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/)
    }
    const body = await routed.text()
    expect(await direct!.text()).toBe(body)
    expect(await viaApp.text()).toBe(body)
    expect(JSON.parse(body)).toMatchObject({ id, sku: 'LANE-1', version: 1 })
  })

  it('answers 304 for a current tag and keeps a sane caller request id', async () => {
    await t.app.request(`/v1/products/${id}`)
    const init = { headers: { 'If-None-Match': 'W/"1"', 'X-Request-Id': 'trace-42' } }
    const direct = ask(`/v1/products/${id}?utm=x`, init)!
    const viaApp = await t.app.request(`/v1/products/${id}?utm=x`, init)
    for (const res of [direct, viaApp]) {
      expect(res.status).toBe(304)
      expect(await res.text()).toBe('')
      expect(res.headers.get('etag')).toBe('"1"')
      expect(res.headers.get('x-request-id')).toBe('trace-42')
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('content-type')).toBeNull()
    }
    expect(withoutRequestId(viaApp)).toEqual(withoutRequestId(direct))
    const insane = ask(`/v1/products/${id.toUpperCase()}`, { headers: { 'X-Request-Id': 'no spaces allowed' } })!
    expect(insane.status).toBe(200)
    expect(insane.headers.get('x-request-id')).not.toBe('no spaces allowed')
  })

  it('logs and counts its answers like routed ones', async () => {
    const count = async (status: number) => {
      const text = await (await t.app.request('/metrics')).text()
      const line = new RegExp(`edgeshop_http_requests_total\\{method="GET",route="/v1/products/:id",status="${status}"\\} (\\d+)`)
      return Number(text.match(line)?.[1] ?? 0)
    }
    await t.app.request(`/v1/products/${id}`)
    const [ok, notModified] = [await count(200), await count(304)]
    const before = t.logs.length
    await t.app.request(`/v1/products/${id}`, { headers: { 'X-Request-Id': 'lane-log-1' } })
    await t.app.request(`/v1/products/${id}`, { headers: { 'If-None-Match': '"1"', 'X-Request-Id': 'lane-log-2' } })
    const lines = t.logs.slice(before).filter((l) => l.msg === 'request' && l.route !== '/metrics')
    expect(lines.map((l) => [l.method, l.route, l.status, l.requestId])).toEqual([
      ['GET', '/v1/products/:id', 200, 'lane-log-1'],
      ['GET', '/v1/products/:id', 304, 'lane-log-2'],
    ])
    expect(typeof lines[0]!.durationMs).toBe('number')
    expect([await count(200), await count(304)]).toEqual([ok + 1, notModified + 1])
    expect(await (await t.app.request('/metrics')).text()).toMatch(/edgeshop_cache_lookups_total\{tier="l1",result="hit"\} [1-9]/)
  })

  it('leaves everything else to the router', async () => {
    await t.app.request(`/v1/products/${id}`)
    for (const path of [
      `/v1/products/${id}/`,
      `/v1/products/${id}x`,
      '/v1/products/not-a-uuid',
      `/v1/products//${id}`,
      `/v2/products/${id}`,
    ]) {
      expect(ask(path)).toBeUndefined()
    }
    expect(ask(`/v1/products/${id}`, { method: 'HEAD' })).toBeUndefined()
    expect(ask(`/v1/products/${crypto.randomUUID()}`)).toBeUndefined()
    await expectProblem(await t.app.request('/v1/products/not-a-uuid'), 404, 'not_found')
    const head = await t.app.request(`/v1/products/${id}`, { method: 'HEAD' })
    expect(head.status).toBe(200)
    expect(head.headers.get('etag')).toBe('"1"')
  })

  it('never answers a version older than a write made here', async () => {
    await t.app.request(`/v1/products/${id}`)
    expect(ask(`/v1/products/${id}`)).toBeInstanceOf(Response)
    await updateProduct(catalog(t), id, { priceCents: 999 }, undefined)
    expect(ask(`/v1/products/${id}`)).toBeUndefined()
    const res = await t.app.request(`/v1/products/${id}`)
    expect(await res.json()).toMatchObject({ priceCents: 999, version: 2 })
    expect(ask(`/v1/products/${id}`)!.headers.get('etag')).toBe('"2"')
  })
})

describe('the product read lane with CORS on', () => {
  it('answers what the CORS layer would add without an Origin, and routes requests with one', async () => {
    const t = await createTestApp({ env: { CORS_ORIGINS: 'https://shop.example' } })
    const row = await createProduct(catalog(t), {
      sku: 'LANE-2',
      name: 'Lane',
      description: '',
      priceCents: 1,
      stock: 1,
      category: 'lamps',
      active: true,
    })
    const path = `/v1/products/${row.id}`
    const routed = await t.app.request(path)
    expect(routed.headers.get('vary')).toBe('Origin')
    const fromLane = await t.app.request(path)
    expect(withoutRequestId(fromLane)).toEqual(withoutRequestId(routed))
    const lane = productReadLane(t.services, plainAnswers, t.layers)!
    expect(lane('GET', path, () => undefined)).toBeDefined()
    expect(lane('GET', path, (name) => (name === 'origin' ? 'https://shop.example' : undefined))).toBeUndefined()
    const res = await t.app.request(path, { headers: { Origin: 'https://shop.example' } })
    expect(res.status).toBe(200)
    expect(res.headers.get('access-control-allow-origin')).toBe('https://shop.example')
    await t.close()
  })
})

describe('the read lane and the app-level middleware', () => {
  const product = {
    sku: 'LANE-3',
    name: 'Layered lamp',
    description: '',
    priceCents: 5,
    stock: 1,
    category: 'lamps',
    active: true,
  }
  /** A layer that marks every answer it sees. */
  const marking = (name: string): MiddlewareHandler<AppEnv> =>
    async function mark(c, next) {
      await next()
      c.res.headers.set('X-Layer', name)
    }

  it('routes the hot read through nothing but the declared layers and its handler', async () => {
    // A middleware added with `app.use` (or to the route) outside `appLayers` shows up here, and the lane would skip it.
    for (const env of [{}, { CORS_ORIGINS: 'https://shop.example' }] as Record<string, string>[]) {
      const t = await createTestApp({ env })
      const matched = t.app.router.match('GET', `/v1/products/${crypto.randomUUID()}`)[0].map(([[handler]]) => handler)
      const declared = t.layers.map((layer) => layer.handler)
      expect(matched.slice(0, declared.length)).toEqual(declared)
      expect(matched.length, 'the layers, then the route handler alone').toBe(declared.length + 1)
      await t.close()
    }
  })

  it('runs a layer that wants every request routed on what L1 holds', async () => {
    const t = await createTestApp({
      layers: (services) => [...appLayers(services), { name: 'mark', handler: marking('routed'), early: 'routed' }],
    })
    const row = await createProduct(catalog(t), product)
    expect(productReadLane(t.services, plainAnswers, t.layers)).toBeUndefined()
    for (let i = 0; i < 3; i++) {
      const res = await t.app.request(`/v1/products/${row.id}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('x-layer')).toBe('routed')
    }
    expect(t.services.cache.peek(`product:${row.id}`)).toBeDefined()
    await t.close()
  })

  it('gives L1 answers what a layer declares, and routes what it must see', async () => {
    const layer: AppLayer = {
      name: 'mark',
      handler: marking('declared'),
      early: { headers: { 'X-Layer': 'declared' }, routes: (header) => header('x-trace') != null },
    }
    const t = await createTestApp({ layers: (services) => [...appLayers(services), layer] })
    const row = await createProduct(catalog(t), product)
    const path = `/v1/products/${row.id}`
    const routed = await t.app.request(path)
    const lane = productReadLane(t.services, plainAnswers, t.layers)!
    const plain = lane('GET', path, () => undefined)
    expect(plain?.headers['X-Layer']).toBe('declared')
    const viaApp = await t.app.request(path)
    expect(withoutRequestId(viaApp)).toEqual(withoutRequestId(routed))
    expect(viaApp.headers.get('x-layer')).toBe('declared')
    expect(lane('GET', path, (name) => (name === 'x-trace' ? '1' : undefined))).toBeUndefined()
    await t.close()
  })
})
