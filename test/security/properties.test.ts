import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionBody } from '../contract/helpers.ts'
import { createHarness, type Harness, type ProductBody } from './harness.ts'
import { type JsonSchema, type OpenApiDocument, type Operation, resolve, walk } from './openapi-model.ts'
import {
  examplePath,
  exampleRequest,
  exampleValue,
  expectCode,
  expectSafeAnswer,
  type Fixtures,
  schemaViolations,
  sweepSetup,
} from './requests.ts'

/*
 * API3 (broken object property level authorization), OWASP API Security
 * Top 10 (2023): a client cannot write a property it does not own (mass
 * assignment), and no answer carries a property the document does not
 * declare (excessive data exposure). Every body and every answer of the
 * document is covered.
 */

/** Properties a client would love to set. */
const MASS = {
  role: 'admin',
  stock: 1_000_000,
  priceCents: 0,
  unitPriceCents: 0,
  totalCents: 0,
  status: 'paid',
  userId: '01a20000-0000-7000-8000-00000000beef',
  id: '01a20000-0000-7000-8000-00000000cafe',
  currency: 'XXX',
  version: 99,
  active: true,
  createdAt: '2000-01-01T00:00:00.000Z',
} as const

let h: Harness
let doc: OpenApiDocument
let ops: Operation[]
let buyer: SessionBody
let product: ProductBody
let fx: Fixtures

beforeAll(async () => {
  h = await createHarness({ tag: 'props', redis: false })
  buyer = await h.customer('buyer')
  product = await h.product({ stock: 40, priceCents: 1234 })
  ;({ doc, ops, fx } = await sweepSetup(h, buyer, product.id))
})
afterAll(() => h?.close())

const tokenFor = (op: Operation) => (op.access === 'admin' ? h.adminToken : op.access === 'customer' ? buyer.accessToken : undefined)

/** Where `field` can be added to a body of this schema: the top level, and each object inside an array. */
function injectionPoints(schema: JsonSchema): string[][] {
  const points: string[][] = [[]]
  const s = resolve(doc, schema)
  for (const [name, prop] of Object.entries(s.properties ?? {})) {
    const p = resolve(doc, prop)
    if (p.type === 'array' && resolve(doc, p.items ?? {}).type === 'object') points.push([name, '0'])
  }
  return points
}

function withField(body: unknown, at: string[], field: string, value: unknown): unknown {
  const copy = structuredClone(body) as Record<string, unknown>
  let target: Record<string, unknown> = copy
  for (const key of at) target = target[key] as Record<string, unknown>
  target[field] = value
  return copy
}

const dataState = () =>
  Promise.all([
    h.sql`select id, user_id, status, total_cents, currency, updated_at from orders order by id`,
    h.sql`select id, stock, price_cents, version, currency, active from products order by id`,
    h.sql`select id, role from users order by id`,
    h.sql`select order_id, unit_price_cents, quantity from order_items order by order_id, product_id`,
  ])

describe('API3: mass assignment', () => {
  it('every request body of the document is closed: unknown properties are refused at every level', () => {
    let objects = 0
    for (const op of ops.filter((o) => o.body && o.access !== 'signed')) {
      walk(doc, op.body!, op.id, (s, at) => {
        if (s.type !== 'object') return
        objects++
        expect(s.additionalProperties, `${at} accepts unknown properties`).toBe(false)
      })
    }
    expect(objects).toBeGreaterThanOrEqual(9)
  })

  it('every body a customer or anyone may send refuses each privileged property with 400 naming it, and nothing is applied', async () => {
    const before = await dataState()
    let tried = 0
    for (const op of ops.filter((o) => o.body && (o.access === 'public' || o.access === 'customer'))) {
      const base = exampleValue(doc, op.body!, 'body', fx)
      for (const at of injectionPoints(op.body!)) {
        for (const [field, value] of Object.entries(MASS)) {
          if (at.length === 0 && Object.hasOwn(base as object, field)) continue
          const spec = exampleRequest(doc, op, fx)
          const res = await h.call(op.method, spec.path, {
            token: tokenFor(op),
            headers: spec.headers,
            body: withField(base, at, field, value),
          })
          const label = `${op.id} with ${[...at, field].join('.')}`
          const answer = await expectCode(res, 400, 'validation_failed', label)
          expect(
            (answer.json as { errors: { path: string }[] }).errors.map((e) => e.path),
            label,
          ).toContain(['body', ...at, field].join('.'))
          tried++
        }
      }
    }
    expect(await dataState()).toEqual(before)
    expect(tried).toBeGreaterThanOrEqual(60)
  })

  it('routes without a body ignore one: a customer cancelling with { status: "paid", userId, … } gets a cancelled order of their own', async () => {
    const order = await h.order(buyer, [{ productId: product.id, quantity: 2 }])
    for (const op of ops.filter((o) => o.access === 'customer' && !o.body && o.method !== 'GET')) {
      const res = await h.call(op.method, examplePath(op, { ...fx, orderId: order.id }), { token: buyer.accessToken, body: MASS })
      await expectSafeAnswer(res, op.id)
    }
    const [row] = await h.sql`select user_id, status, total_cents, currency from orders where id = ${order.id}`
    expect(row).toEqual({ user_id: buyer.user.id, status: 'cancelled', total_cents: 2 * 1234, currency: 'USD' })
    const [p] = await h.sql`select stock, price_cents from products where id = ${product.id}`
    expect(p).toEqual({ stock: 39, price_cents: 1234 })
  })

  it('admin bodies refuse the properties the server owns: id, currency, version, timestamps', async () => {
    for (const op of ops.filter((o) => o.body && o.access === 'admin')) {
      for (const field of ['id', 'currency', 'version', 'createdAt', 'updatedAt', 'userId']) {
        const spec = exampleRequest(doc, op, fx)
        const body = { ...(JSON.parse(spec.body!) as Record<string, unknown>), [field]: (MASS as Record<string, unknown>)[field] ?? 'x' }
        const res = await h.call(op.method, spec.path, { token: h.adminToken, headers: spec.headers, body })
        const answer = await expectCode(res, 400, 'validation_failed', `${op.id} with ${field}`)
        expect((answer.json as { errors: { path: string }[] }).errors.map((e) => e.path)).toContain(`body.${field}`)
      }
    }
    const [p] = await h.sql`select currency, version from products where id = ${product.id}`
    expect(p!.currency).toBe('USD')
  })
})

describe('API3: excessive data exposure', () => {
  it('every 2xx answer of every route holds exactly the documented properties — no hash, no internal column', async () => {
    const spare = await h.product({ stock: 5 })
    const order = await h.order(buyer, [{ productId: spare.id, quantity: 1 }])
    const own = { ...fx, productId: spare.id, orderId: order.id }
    let checked = 0
    for (const op of ops.filter((o) => o.success.size > 0 && o.access !== 'signed')) {
      const spec = exampleRequest(doc, op, own)
      const res = await h.call(op.method, spec.path, { token: tokenFor(op), raw: spec.body, headers: spec.headers })
      const answer = await expectSafeAnswer(res, op.id)
      const schema = op.success.get(answer.status)
      if (!schema) continue
      expect(schemaViolations(doc, schema, answer.json), `${op.id} ${answer.status}`).toEqual([])
      expect(answer.text, op.id).not.toMatch(/password|passwordHash|password_hash|tokenHash|token_hash|familyId|fingerprint/i)
      checked++
    }
    expect(checked).toBeGreaterThanOrEqual(12)
  })

  it('the session answers carry the caller’s account and nothing of anyone else', async () => {
    const res = await h.call('POST', '/v1/auth/login', { body: { email: buyer.user.email, password: 'a perfectly fine password' } })
    const answer = await expectSafeAnswer(res, 'login')
    expect(Object.keys(answer.json as object).sort()).toEqual(['accessToken', 'expiresIn', 'refreshToken', 'user'])
    expect(Object.keys((answer.json as { user: object }).user).sort()).toEqual(['createdAt', 'email', 'id', 'name', 'role'])
  })
})
