import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionBody } from '../contract/helpers.ts'
import { createHarness, type Harness, type OrderBody, type ProductBody } from './harness.ts'
import { type JsonSchema, type OpenApiDocument, type Operation, paramsIn, resolve } from './openapi-model.ts'
import { exampleRequest, exampleValue, expectCode, expectSafeAnswer, type Fixtures, sweepSetup } from './requests.ts'

/*
 * What the fuzzer found, pinned down so that it stays fixed whatever seed a
 * run draws (docs/SECURITY.md § Found and fixed). Each was a 500, or a stale
 * answer, before its fix.
 */

let h: Harness
let doc: OpenApiDocument
let ops: Operation[]
let buyer: SessionBody
let product: ProductBody
let fx: Fixtures

beforeAll(async () => {
  h = await createHarness({ tag: 'regress' })
  buyer = await h.customer()
  product = await h.product({ stock: 100 })
  ;({ doc, ops, fx } = await sweepSetup(h, buyer, product.id))
})
afterAll(() => h?.close())

const tokenFor = (op: Operation) => (op.access === 'admin' ? h.adminToken : op.access === 'customer' ? buyer.accessToken : undefined)

/** A string schema that takes free text (not an id, a code or an email, whose patterns hold only ASCII). */
const freeText = (s: JsonSchema) =>
  s.type === 'string' && !s.format && !s.enum && (!s.pattern || new RegExp(s.pattern).test('free text, é'))

/** The dotted paths of the free-text strings of a body. */
function textPaths(schema: JsonSchema, at: string[] = []): string[][] {
  const s = resolve(doc, schema)
  if (s.type === 'string') return freeText(s) ? [at] : []
  if (s.type === 'object') return Object.entries(s.properties ?? {}).flatMap(([k, v]) => textPaths(v, [...at, k]))
  return []
}

describe('regressions', () => {
  it('U+0000 or an unpaired surrogate in any free-text body field, and U+0000 in any query parameter, is 400 naming it, not a 500 or a rewritten value', async () => {
    let tried = 0
    for (const op of ops.filter((o) => o.access !== 'signed')) {
      for (const at of op.body ? textPaths(op.body) : []) {
        for (const bad of ['nul\u0000', '\ud800', 'lone\udfff', '\udc00\ud800']) {
          const body = exampleValue(doc, op.body!, 'body', fx) as Record<string, unknown>
          body[at[0]!] = `${bad}${body[at[0]!] as string}`
          const spec = exampleRequest(doc, op, fx)
          const answer = await expectCode(
            await h.call(op.method, spec.path, { token: tokenFor(op), headers: spec.headers, body }),
            400,
            'validation_failed',
            `${op.id} body.${at.join('.')} with ${JSON.stringify(bad)}`,
          )
          expect((answer.json as { errors: { path: string }[] }).errors.map((e) => e.path)).toContain(`body.${at.join('.')}`)
          tried++
        }
      }
      for (const p of paramsIn(op, 'query').filter((q) => q.schema.type === 'string' && !q.schema.enum)) {
        const spec = exampleRequest(doc, op, fx)
        const res = await h.call(op.method, `${spec.path}?${p.name}=a%00b`, { token: tokenFor(op) })
        const answer = await expectSafeAnswer(res, `${op.id} ?${p.name}`)
        expect(answer.status, `${op.id} ?${p.name}: ${answer.text}`).toBe(400)
        tried++
      }
    }
    expect(tried).toBeGreaterThanOrEqual(10 * 4 + 6)
  })

  it('lone surrogates are not interchangeable: a password or name of them is refused at signup and login, never hashed or stored as U+FFFD', async () => {
    const email = `surrogates.${Date.now()}@example.test`
    const signup = await h.call('POST', '/v1/auth/signup', { body: { email, password: '\ud800'.repeat(12), name: 'Lone' } })
    const refused = await expectCode(signup, 400, 'validation_failed', 'signup with twelve \\ud800')
    expect(refused.json).toMatchObject({ errors: [{ path: 'body.password', message: expect.stringContaining('surrogate') }] })
    const login = await h.call('POST', '/v1/auth/login', { body: { email, password: '\udfff'.repeat(12) } })
    await expectCode(login, 400, 'validation_failed', 'login with twelve \\udfff')
    const named = await h.call('POST', '/v1/auth/signup', { body: { email, password: 'a fine password', name: 'Ada \ud800' } })
    const name = await expectCode(named, 400, 'validation_failed', 'signup with a lone surrogate in the name')
    expect((name.json as { errors: { path: string }[] }).errors.map((e) => e.path)).toEqual(['body.name'])
    expect(await h.sql`select id from users where email = ${email}`).toEqual([])
    // A pair is one character, and text like any other.
    const paired = await h.call('POST', '/v1/auth/signup', {
      body: { email, password: '\ud83d\ude00'.repeat(10), name: 'Ada \ud83d\ude00' },
    })
    expect(paired.status).toBe(201)
    expect(((await paired.json()) as SessionBody).user.name).toBe('Ada 😀')
  })

  it('an address RFC 5321 allows, such as o!reilly@example.com, signs up and logs in, in any case', async () => {
    const local = `o!reilly.${Date.now()}`
    const signup = await h.call('POST', '/v1/auth/signup', {
      body: { email: `${local}@example.com`, password: 'a fine password', name: 'Tim' },
    })
    expect(signup.status, await signup.clone().text()).toBe(201)
    expect(((await signup.json()) as SessionBody).user.email).toBe(`${local}@example.com`)
    const login = await h.call('POST', '/v1/auth/login', {
      body: { email: `${local.toUpperCase()}@Example.COM`, password: 'a fine password' },
    })
    expect(login.status).toBe(200)
    for (const email of ['"quoted"@example.com', 'a..b@example.com', 'a@[127.0.0.1]', 'a@localhost', '.a@example.com']) {
      const res = await h.call('POST', '/v1/auth/signup', { body: { email, password: 'a fine password', name: 'Tim' } })
      const answer = await expectCode(res, 400, 'validation_failed', email)
      expect((answer.json as { errors: { path: string }[] }).errors.map((e) => e.path)).toEqual(['body.email'])
    }
  })

  it('a body nested thousands of levels deep is an ordinary 4xx on every route that takes one', async () => {
    for (const op of ops.filter((o) => o.method !== 'GET')) {
      const spec = exampleRequest(doc, op, fx)
      for (const raw of [`${'['.repeat(30_000)}${']'.repeat(30_000)}`, `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}`]) {
        const answer = await expectSafeAnswer(
          await h.call(op.method, spec.path, { token: tokenFor(op), headers: spec.headers, raw }),
          `${op.id} deep`,
          op,
        )
        expect(answer.status, `${op.id}: ${answer.text}`).toBeLessThan(500)
      }
    }
  })

  it('a product id in capitals orders that product; the same product in two spellings is one product named twice (400)', async () => {
    const p = await h.product({ stock: 10 })
    const upper = await h.call('POST', '/v1/orders', {
      token: buyer.accessToken,
      body: { items: [{ productId: p.id.toUpperCase(), quantity: 2 }] },
      headers: { 'Idempotency-Key': `upper-${p.id}` },
    })
    expect(upper.status).toBe(201)
    expect(((await upper.json()) as OrderBody).items[0]!.productId).toBe(p.id)
    const twice = await h.call('POST', '/v1/orders', {
      token: buyer.accessToken,
      body: {
        items: [
          { productId: p.id.toUpperCase(), quantity: 1 },
          { productId: p.id, quantity: 1 },
        ],
      },
      headers: { 'Idempotency-Key': `twice-${p.id}` },
    })
    await expectCode(twice, 400, 'validation_failed', 'one product in two spellings')
    const [row] = await h.sql`select stock from products where id = ${p.id}`
    expect(row!.stock).toBe(8)
  })

  it('every spelling of a product id reads, and is invalidated as, one cache entry: archived through one, gone through all', async () => {
    const p = await h.product()
    const spellings = [p.id, p.id.toUpperCase()]
    for (const id of spellings) expect((await h.call('GET', `/v1/products/${id}`)).status).toBe(200)
    expect((await h.call('DELETE', `/v1/products/${p.id.toUpperCase()}`, { token: h.adminToken })).status).toBe(204)
    for (const id of spellings) await expectCode(await h.call('GET', `/v1/products/${id}`), 404, 'not_found', `GET ${id} after archiving`)
  })

  it('an order whose total would pass 2^31 − 1 minor units is 400 and reserves nothing; a database error inside an idempotent request is answered as itself', async () => {
    const p = await h.product({ priceCents: 100_000_000, stock: 1000 })
    const res = await h.call('POST', '/v1/orders', {
      token: buyer.accessToken,
      body: { items: [{ productId: p.id, quantity: 100 }] },
      headers: { 'Idempotency-Key': `total-${p.id}` },
    })
    await expectCode(res, 400, 'validation_failed', 'an order total out of range')
    const [row] = await h.sql`select stock from products where id = ${p.id}`
    expect(row!.stock).toBe(1000)
    expect(h.t.logs.filter((l) => l.msg === 'unhandled error')).toEqual([])
  })
})
