import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { awayFromWindowBoundary, type SessionBody } from '../contract/helpers.ts'
import { createHarness, freshIp, type Harness, type ProductBody, unique } from './harness.ts'
import { type JsonSchema, type OpenApiDocument, type Operation, paramsIn, resolve, walk } from './openapi-model.ts'
import { exampleRequest, exampleValue, expectCode, expectSafeAnswer, type Fixtures, sweepSetup } from './requests.ts'

/*
 * API4 (unrestricted resource consumption), OWASP API Security Top 10
 * (2023): every input is bounded by the document, page sizes and order
 * lines are capped, every rate-limited route limits per client and per
 * subject, and a request stuck in the database gives its pooled connection
 * back after STATEMENT_TIMEOUT_MS. The body limit is checked over real HTTP
 * in http-surface.test.ts.
 */

const LIMIT = 3

let h: Harness
let doc: OpenApiDocument
let ops: Operation[]
let buyer: SessionBody
let product: ProductBody
let fx: Fixtures

beforeAll(async () => {
  h = await createHarness({ tag: 'resources', env: { RATE_LIMIT_AUTH: `${LIMIT}/60` } })
  buyer = await h.customer('buyer')
  product = await h.product({ stock: 1000 })
  ;({ doc, ops, fx } = await sweepSetup(h, buyer, product.id))
})
afterAll(() => h?.close())

const tokenFor = (op: Operation) => (op.access === 'admin' ? h.adminToken : op.access === 'customer' ? buyer.accessToken : undefined)

describe('API4: every input is bounded', () => {
  it('the document bounds every string, array and number a client sends: bodies, queries and headers', () => {
    const unbounded: string[] = []
    const check = (s: JsonSchema, at: string) => {
      const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type
      if (type === 'string' && s.maxLength === undefined && !s.enum && s.format !== 'uuid')
        unbounded.push(`${at}: string without maxLength`)
      if (type === 'array' && s.maxItems === undefined) unbounded.push(`${at}: array without maxItems`)
      if ((type === 'integer' || type === 'number') && (s.maximum === undefined || s.minimum === undefined))
        unbounded.push(`${at}: number without minimum and maximum`)
    }
    let fields = 0
    for (const op of ops.filter((o) => o.access !== 'signed')) {
      if (op.body)
        walk(doc, op.body, `${op.id} body`, (s, at) => {
          fields++
          check(s, at)
        })
      for (const p of paramsIn(op, 'query')) {
        fields++
        check(resolve(doc, p.schema), `${op.id} ?${p.name}`)
      }
    }
    // Headers are bounded by the server's header limit, and the two this API reads are checked by their middleware.
    expect(unbounded).toEqual([])
    expect(fields).toBeGreaterThanOrEqual(30)
  })

  it('every list route caps its page at 100: limit=101 and limit=0 are 400, limit=100 answers at most 100 items', async () => {
    const lists = ops.filter((o) => paramsIn(o, 'query').some((p) => p.name === 'limit'))
    expect(lists.length).toBeGreaterThanOrEqual(4)
    for (const op of lists) {
      const limit = paramsIn(op, 'query').find((p) => p.name === 'limit')!.schema
      expect(limit.maximum, op.id).toBeLessThanOrEqual(100)
      for (const bad of ['101', '0', '-1', '1e9', 'all']) {
        const answer = await expectCode(
          await h.call('GET', `${op.path}?limit=${bad}`, { token: tokenFor(op) }),
          400,
          'validation_failed',
          `${op.id}?limit=${bad}`,
        )
        expect((answer.json as { errors: { path: string }[] }).errors[0]?.path).toBe('query.limit')
      }
      const page = await expectSafeAnswer(await h.call('GET', `${op.path}?limit=100`, { token: tokenFor(op) }), `${op.id}?limit=100`)
      expect(page.status, op.id).toBe(200)
      expect((page.json as { items: unknown[] }).items.length).toBeLessThanOrEqual(100)
    }
  })

  it('every array a body may hold is capped: one element over maxItems (an order’s 51st line) is 400, and nothing is reserved', async () => {
    const products = await Promise.all(Array.from({ length: 51 }, () => h.product({ stock: 10 })))
    let capped = 0
    for (const op of ops.filter((o) => o.body && o.access !== 'signed')) {
      const s = resolve(doc, op.body!)
      for (const [name, prop] of Object.entries(s.properties ?? {})) {
        const arr = resolve(doc, prop)
        if (arr.type !== 'array') continue
        const body = exampleValue(doc, op.body!, 'body', fx) as Record<string, unknown>
        body[name] = products
          .slice(0, arr.maxItems! + 1)
          .map((p) => ({ ...(exampleValue(doc, arr.items!, name, fx) as object), productId: p.id }))
        const spec = exampleRequest(doc, op, fx)
        const answer = await expectCode(
          await h.call(op.method, spec.path, { token: tokenFor(op), headers: spec.headers, body }),
          400,
          'validation_failed',
          `${op.id} with ${arr.maxItems! + 1} ${name}`,
        )
        expect((answer.json as { errors: { path: string }[] }).errors.map((e) => e.path)).toContain(`body.${name}`)
        capped++
      }
    }
    expect(capped).toBeGreaterThanOrEqual(1)
    const stocks = await h.sql`select distinct stock from products where id in ${h.sql(products.map((p) => p.id))}`
    expect(stocks).toEqual([{ stock: 10 }])
  })
})

describe('API4: rate limits', () => {
  const limited = () => ops.filter((o) => o.errorCodes.get(429)?.includes('rate_limited'))

  it(`every rate-limited route allows ${LIMIT} requests per client address, then 429 with Retry-After and RateLimit headers; other clients go on`, async () => {
    expect(
      limited()
        .map((o) => o.id)
        .sort(),
    ).toEqual(['POST /v1/auth/login', 'POST /v1/auth/refresh', 'POST /v1/auth/signup'])
    await awayFromWindowBoundary(60, 8000)
    // A new subject (email, refresh token) per request, so only the client's address is counted.
    const anySubject = (op: Operation) => exampleRequest(doc, op, { ...fx, refreshToken: `never-issued-${unique()}` })
    for (const op of limited()) {
      const ip = freshIp()
      for (let i = 0; i < LIMIT; i++) {
        const spec = anySubject(op)
        // Whatever a client writes left of the proxy's entry in X-Forwarded-For is not its address.
        const res = await h.call(op.method, spec.path, { raw: spec.body, ip: `203.0.113.${i}, ${ip}` })
        await expectSafeAnswer(res, `${op.id} #${i + 1}`)
        expect(res.status, `${op.id} #${i + 1}`).not.toBe(429)
        expect(res.headers.get('ratelimit-limit'), op.id).toBe(String(LIMIT))
        expect(res.headers.get('ratelimit-remaining'), op.id).toBe(String(LIMIT - 1 - i))
        expect(Number(res.headers.get('ratelimit-reset')), op.id).toBeGreaterThanOrEqual(0)
      }
      const spec = anySubject(op)
      const blocked = await h.call(op.method, spec.path, { raw: spec.body, ip: `198.51.100.77, ${ip}` })
      await expectCode(blocked, 429, 'rate_limited', `${op.id} over the limit`)
      expect(Number(blocked.headers.get('retry-after')), op.id).toBeGreaterThanOrEqual(1)
      expect(blocked.headers.get('ratelimit-remaining'), op.id).toBe('0')
      const fresh = anySubject(op)
      const other = await h.call(op.method, fresh.path, { raw: fresh.body })
      expect(other.status, `${op.id} from another client`).not.toBe(429)
    }
  })

  it(`every rate-limited route also counts per subject (email or refresh token) across client addresses: brute force from many addresses is 429`, async () => {
    await awayFromWindowBoundary(60, 8000)
    for (const op of limited()) {
      const spec = exampleRequest(doc, op, { ...fx, refreshToken: `one-subject-${unique()}` })
      const statuses: number[] = []
      for (let i = 0; i <= LIMIT; i++) statuses.push((await h.call(op.method, spec.path, { raw: spec.body })).status)
      expect(statuses.slice(0, LIMIT), op.id).not.toContain(429)
      expect(statuses[LIMIT], `${op.id}: ${statuses}`).toBe(429)
    }
  })
})

describe('API4: a slow request cannot hold a pooled connection', () => {
  let slow: Harness
  beforeAll(async () => {
    slow = await createHarness({ tag: 'timeout', redis: false, poolMax: 1, timeoutMs: 1000, statementTimeoutMs: 500 })
  })
  afterAll(() => slow?.close())

  it('a request stuck behind a lock is cut at STATEMENT_TIMEOUT_MS with 503, and the pool’s only connection serves the next request', async () => {
    const buyer = await slow.customer()
    const p = await slow.product({ stock: 10 })
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    let locked!: () => void
    const isLocked = new Promise<void>((r) => (locked = r))
    const holder = slow.sql.begin(async (tx) => {
      await tx`lock table products in access exclusive mode`
      locked()
      await held
    })
    await isLocked
    try {
      for (const [label, call] of [
        [
          'checkout',
          () =>
            slow.call('POST', '/v1/orders', {
              token: buyer.accessToken,
              body: { items: [{ productId: p.id, quantity: 1 }] },
              headers: { 'Idempotency-Key': `stuck-${Date.now()}` },
            }),
        ],
        ['catalog search', () => slow.call('GET', `/v1/products?q=stuck-${Date.now()}`)],
      ] as const) {
        const started = performance.now()
        const res = await call()
        const ms = performance.now() - started
        await expectCode(res, 503, 'service_unavailable', label)
        expect(res.headers.get('retry-after'), label).toBe('1')
        // The statement's bound (500 ms), with room for a loaded machine; without the bound it would wait for the lock forever.
        expect(ms, label).toBeLessThan(3000)
      }
    } finally {
      release()
      await holder
    }
    // With a pool of one, these only answer if the stuck requests gave their connection back.
    expect((await slow.call('GET', '/v1/orders', { token: buyer.accessToken })).status).toBe(200)
    const ok = await slow.call('POST', '/v1/orders', {
      token: buyer.accessToken,
      body: { items: [{ productId: p.id, quantity: 1 }] },
      headers: { 'Idempotency-Key': `after-${Date.now()}` },
    })
    expect(ok.status).toBe(201)
    const [row] = await slow.sql`select stock from products where id = ${p.id}`
    expect(row!.stock).toBe(9)
  })
})
