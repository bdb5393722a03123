import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { SessionBody } from '../contract/helpers.ts'
import { createHarness, type Harness, METRICS_TOKEN, type OrderBody, type ProductBody } from './harness.ts'
import { honoPattern, type OpenApiDocument, type Operation } from './openapi-model.ts'
import { examplePath, exampleRequest, expectCode, expectSafeAnswer, type Fixtures, type RequestSpec, sweepSetup } from './requests.ts'

/*
 * Who may call what (OWASP API Security Top 10, 2023):
 *   API9  improper inventory   every route the app serves is documented, with who may call it
 *   API5  function level       no credentials → 401 on every non-public route; a customer on every admin route → 403
 *   API1  object level         every route that takes an order id, given another customer's → 404, nothing changes
 * The routes come from the app's own /openapi.json: a new route is swept without being listed here.
 */

/**
 * The routes anyone may call. A route missing from the document's security
 * declarations is public by default, so this list is the one place that says
 * which ones are meant to be: a new public route fails the inventory test
 * until it is added here, on purpose.
 */
const PUBLIC = [
  'GET /healthz',
  'GET /readyz',
  'POST /v1/auth/signup',
  'POST /v1/auth/login',
  'POST /v1/auth/refresh',
  'POST /v1/auth/logout',
  'GET /v1/products',
  'GET /v1/products/{id}',
]

/** Served but not in the document: the document and its page, and the GraphQL API (described by its SDL, which /docs links). */
const UNDOCUMENTED = ['GET /openapi.json', 'GET /docs', 'GET /graphql', 'POST /graphql', 'GET /graphql/schema.graphql']

let h: Harness
let doc: OpenApiDocument
let ops: Operation[]
let alice: SessionBody
let bob: SessionBody
let product: ProductBody
let aliceOrder: OrderBody
let fx: Fixtures

const send = (spec: RequestSpec, token?: string) => h.call(spec.method, spec.path, { token, raw: spec.body, headers: spec.headers })

beforeAll(async () => {
  h = await createHarness({ tag: 'access' })
  ;[alice, bob] = await Promise.all([h.customer('alice'), h.customer('bob')])
  product = await h.product({ stock: 100 })
  ;({ doc, ops, order: aliceOrder, fx } = await sweepSetup(h, alice, product.id, 2))
})
afterAll(() => h?.close())

/**
 * The data a swept request could change: every order, product and user, and
 * the fixtures' jobs (jobs of other tests' orders run in the background and
 * are not this snapshot's business).
 */
/** The database's state once background work has settled: a payment job of an earlier test finishing is not a change made by the requests under test. */
async function snapshot() {
  await vi.waitFor(
    async () => {
      const [busy] = await h.sql<
        { n: number }[]
      >`select count(*)::int as n from jobs where status = 'running' or (status = 'pending' and run_at <= now())`
      if (busy!.n !== 0) throw new Error('background jobs did not settle within 15 s')
    },
    { timeout: 15_000, interval: 50 },
  )
  const [orders, products, jobs, users] = await Promise.all([
    h.sql`select id, status, updated_at from orders order by id`,
    h.sql`select id, stock, version, active from products order by id`,
    h.sql`select id, name, status, attempts, run_at from jobs where id = ${fx.jobId} or payload->>'orderId' = ${fx.orderId} order by id`,
    h.sql`select id, role, name from users order by id`,
  ])
  return { orders, products, jobs, users }
}

describe('API9: inventory', () => {
  it('every route the app serves is in /openapi.json, and every documented route is served', () => {
    const served = new Set(h.t.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path}`))
    const documented = new Set(ops.map((o) => `${o.method} ${honoPattern(o.path)}`))
    expect([...served].filter((r) => !documented.has(r)).sort()).toEqual([...UNDOCUMENTED].sort())
    expect([...documented].filter((r) => !served.has(r))).toEqual([])
  })

  it('the public routes are exactly the intended ones; the rest declare a bearer token, the metrics token or a QStash signature', () => {
    expect(
      ops
        .filter((o) => o.access === 'public')
        .map((o) => o.id)
        .sort(),
    ).toEqual([...PUBLIC].sort())
    for (const op of ops) {
      if (op.path.startsWith('/internal/')) expect(op.access, op.id).toBe('signed')
      if (op.path === '/metrics') expect(op.access, op.id).toBe('metrics')
    }
  })

  it('admin routes are the ones that say so: summary "(admin)" or under /v1/admin/, and they declare 403', () => {
    for (const op of ops.filter((o) => o.access === 'customer' || o.access === 'admin')) {
      const saysAdmin = /\(admin\)/.test(op.summary) || op.path.startsWith('/v1/admin/')
      expect(op.access === 'admin', `${op.id}: "${op.summary}"`).toBe(saysAdmin)
    }
    expect(ops.filter((o) => o.access === 'admin').length).toBeGreaterThanOrEqual(7)
  })
})

describe('API5: function level authorization', () => {
  it('no credentials: every route that is not public answers 401 with the scheme it needs, and nothing changes', async () => {
    const before = await snapshot()
    const swept: string[] = []
    for (const op of ops.filter((o) => o.access !== 'public')) {
      const res = await send(exampleRequest(doc, op, fx))
      const code = op.access === 'signed' ? 'invalid_signature' : 'unauthorized'
      await expectCode(res, 401, code, `${op.id} without credentials`)
      if (op.access === 'customer' || op.access === 'admin') expect(res.headers.get('www-authenticate'), op.id).toBe('Bearer')
      swept.push(op.id)
    }
    expect(await snapshot()).toEqual(before)
    expect(swept.length).toBe(ops.length - PUBLIC.length)
  })

  it('a customer token on every admin route answers 403 forbidden, and nothing changes', async () => {
    const before = await snapshot()
    for (const op of ops.filter((o) => o.access === 'admin')) {
      await expectCode(await send(exampleRequest(doc, op, fx), alice.accessToken), 403, 'forbidden', `${op.id} as a customer`)
    }
    expect(await snapshot()).toEqual(before)
  })

  it('a customer token on the metrics route is not the metrics token: 401', async () => {
    for (const op of ops.filter((o) => o.access === 'metrics')) {
      await expectCode(await send(exampleRequest(doc, op, fx), alice.accessToken), 401, 'unauthorized', op.id)
      expect((await h.call(op.method, op.path, { token: METRICS_TOKEN })).status, op.id).toBe(200)
    }
  })

  it('the same requests pass authorization with the right role: every customer route takes a customer, every admin route an admin', async () => {
    // Admin writes act on a product of their own, so the fixtures above stay as they are.
    const spare = await h.product({ stock: 5 })
    const spareOrder = await h.order(alice, [{ productId: spare.id, quantity: 1 }])
    const own = { ...fx, productId: spare.id, orderId: spareOrder.id }
    for (const op of ops.filter((o) => o.access === 'customer' || o.access === 'admin')) {
      const token = op.access === 'admin' ? h.adminToken : alice.accessToken
      const { status } = await expectSafeAnswer(await send(exampleRequest(doc, op, own), token), `${op.id} with the right role`)
      expect([401, 403], `${op.id} answered ${status}`).not.toContain(status)
      expect(status, op.id).toBeLessThan(500)
    }
  })
})

describe('API1: object level authorization', () => {
  it('every route that takes an order id answers 404 to another customer, the same 404 as for an id that does not exist, and nothing changes', async () => {
    const idRoutes = ops.filter((o) => o.access === 'customer' && o.params.some((p) => p.in === 'path'))
    expect(idRoutes.map((o) => o.id).sort()).toEqual(
      ['GET /v1/orders/{id}', 'GET /v1/orders/{id}/events', 'POST /v1/orders/{id}/cancel', 'POST /v1/orders/{id}/pay'].sort(),
    )
    const before = await snapshot()
    const unknown = '01a20000-0000-7000-8000-000000000000'
    for (const op of idRoutes) {
      const foreign = await expectCode(
        await send(exampleRequest(doc, op, fx), bob.accessToken),
        404,
        'not_found',
        `${op.id} by another customer`,
      )
      const missing = await expectCode(
        await send(exampleRequest(doc, op, fx, { id: unknown }), bob.accessToken),
        404,
        'not_found',
        `${op.id} with an unknown id`,
      )
      const { requestId: _a, ...a } = foreign.json as Record<string, unknown>
      const { requestId: _b, ...b } = missing.json as Record<string, unknown>
      expect(a, op.id).toEqual(b)
      expect(foreign.text).not.toContain(alice.user.id)
    }
    expect(await snapshot()).toEqual(before)
    // The owner reaches the same order through the same route.
    expect((await h.call('GET', examplePath(idRoutes.find((o) => o.method === 'GET')!, fx), { token: alice.accessToken })).status).toBe(200)
  })

  it('every id route of the admin is closed to customers whatever the id: 403 before any lookup', async () => {
    for (const op of ops.filter((o) => o.access === 'admin' && o.params.some((p) => p.in === 'path' && p.name === 'id'))) {
      for (const id of [aliceOrder.id, product.id, fx.jobId, '01a20000-0000-7000-8000-000000000000', 'not-an-id']) {
        await expectCode(await send(exampleRequest(doc, op, fx, { id }), bob.accessToken), 403, 'forbidden', `${op.id} with ${id}`)
      }
    }
  })

  it('every customer route without an id answers only with the caller’s own objects', async () => {
    const lists = ops.filter((o) => o.access === 'customer' && o.method === 'GET' && !o.params.some((p) => p.in === 'path'))
    expect(lists.map((o) => o.id).sort()).toEqual(['GET /v1/me', 'GET /v1/orders'])
    for (const op of lists) {
      const answer = await expectSafeAnswer(await h.call('GET', `${op.path}?limit=100`, { token: bob.accessToken }), op.id)
      expect(answer.status, op.id).toBe(200)
      for (const secret of [aliceOrder.id, alice.user.id, alice.user.email])
        expect(answer.text, `${op.id} shows ${secret}`).not.toContain(secret)
    }
  })

  it('idempotency keys are per user: another customer replaying a key gets their own answer, not the owner’s', async () => {
    const key = `shared-key-${Date.now()}`
    const body = { items: [{ productId: product.id, quantity: 1 }] }
    const first = await h.call('POST', '/v1/orders', { token: alice.accessToken, body, headers: { 'Idempotency-Key': key } })
    expect(first.status).toBe(201)
    const other = await h.call('POST', '/v1/orders', { token: bob.accessToken, body, headers: { 'Idempotency-Key': key } })
    expect(other.status).toBe(201)
    expect(other.headers.get('idempotent-replayed')).toBeNull()
    expect(((await other.json()) as OrderBody).id).not.toBe(((await first.json()) as OrderBody).id)
  })
})
