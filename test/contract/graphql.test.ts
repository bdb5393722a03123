import { beforeAll, describe, expect, inject, it } from 'vitest'
import { CONTRACT_ADMIN } from '../support/contract-setup.ts'
import { client, expectProblem, loginAdmin, signupCustomer } from './helpers.ts'

/*
 * The GraphQL read API (API.md § GraphQL), black-box over HTTP on every
 * target: the same tokens, roles and error codes as REST, GET and POST, and
 * the limits that refuse an abusive query with 400 before it runs.
 */

const base = inject('baseUrl')
const target = inject('target')

interface GraphQLBody<T = unknown> {
  data?: T | null
  errors?: { message: string; path?: (string | number)[]; extensions: { code: string; errors?: { path: string }[] } }[]
}

let adminToken: string
const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`

beforeAll(async () => {
  adminToken = await loginAdmin(base, CONTRACT_ADMIN)
})

async function graphql<T>(query: string, opts: { token?: string; variables?: Record<string, unknown> } = {}) {
  const res = await client(base).post('/graphql', { query, variables: opts.variables }, opts.token ? { token: opts.token } : {})
  const text = await res.text()
  return { status: res.status, res, text, body: JSON.parse(text) as GraphQLBody<T> }
}

async function product(stock = 50): Promise<{ id: string; sku: string }> {
  const sku = `GQL-${unique()}`
  const res = await client(base).post(
    '/v1/products',
    { sku, name: `Graph ${sku}`, priceCents: 700, stock, category: 'graphql' },
    { token: adminToken },
  )
  if (res.status !== 201) throw new Error(`product: ${res.status} ${await res.text()}`)
  return { id: ((await res.json()) as { id: string }).id, sku }
}

const codes = (body: GraphQLBody<unknown>) => (body.errors ?? []).map((e) => e.extensions.code)

describe('GraphQL: reads', () => {
  it('answers an anonymous products query, with the same pages as REST', async () => {
    const p = await product()
    const { status, body, text } = await graphql<{
      products: { items: { id: string; sku: string; priceCents: number }[]; nextCursor: string | null }
    }>('{ products(limit: 5, category: "graphql") { items { id sku priceCents currency } nextCursor } }')
    expect(status, text).toBe(200)
    expect(body.errors).toBeUndefined()
    expect(body.data!.products.items[0]).toMatchObject({ id: p.id, sku: p.sku, priceCents: 700 })
    const rest = (await (await client(base).get('/v1/products?limit=5&category=graphql')).json()) as { items: { id: string }[] }
    expect(body.data!.products.items.map((i) => i.id)).toEqual(rest.items.map((i) => i.id))

    const one = await graphql<{ product: { sku: string } | null; missing: unknown }>(
      'query ($id: ID!) { product(id: $id) { sku } missing: product(id: "00000000-0000-7000-8000-000000000000") { sku } }',
      { variables: { id: p.id } },
    )
    expect(one.status, one.text).toBe(200)
    expect(one.body.data).toEqual({ product: { sku: p.sku }, missing: null })
  })

  it('answers GET with the query in the query string, cacheable when anonymous and complete', async () => {
    const p = await product()
    const query = encodeURIComponent(`{ product(id: "${p.id}") { sku stock } }`)
    const res = await client(base).get(`/graphql?query=${query}`, { headers: { 'X-Request-Id': 'graphql-get-1' } })
    const text = await res.text()
    expect(res.status, text).toBe(200)
    expect(res.headers.get('x-request-id')).toBe('graphql-get-1')
    expect(res.headers.get('x-content-type-options')).toBe('nosniff')
    // Anonymous and complete: HTTP caches may keep it briefly, as they keep the REST catalog reads.
    expect(res.headers.get('cache-control')).toMatch(/^public, max-age=\d+/)
    expect(res.headers.get('vary')).toMatch(/authorization/i)
    const viewer = await client(base).get(`/graphql?query=${encodeURIComponent('{ viewer { id } }')}`)
    expect(viewer.headers.get('cache-control')).toBe('no-store')
    expect(JSON.parse(text)).toEqual({ data: { product: { sku: p.sku, stock: 50 } } })
  })

  it("answers the viewer's orders with their items and products", async () => {
    const [a, b] = [await product(), await product()]
    const c = client(base)
    const buyer = await signupCustomer(c, 'gql')
    const placed = await c.post(
      '/v1/orders',
      {
        items: [
          { productId: a.id, quantity: 2 },
          { productId: b.id, quantity: 1 },
        ],
      },
      { token: buyer.accessToken, headers: { 'Idempotency-Key': unique() } },
    )
    expect(placed.status).toBe(201)
    const orderId = ((await placed.json()) as { id: string }).id
    const { status, body, text } = await graphql<{
      viewer: {
        id: string
        role: string
        orders: { items: { id: string; status: string; totalCents: number; items: { quantity: number; product: { sku: string } }[] }[] }
      }
    }>('{ viewer { id role orders(limit: 5) { items { id status totalCents items { quantity product { sku } } } nextCursor } } }', {
      token: buyer.accessToken,
    })
    expect(status, text).toBe(200)
    expect(body.errors).toBeUndefined()
    expect(body.data!.viewer).toMatchObject({ id: buyer.user.id, role: 'customer' })
    const [order] = body.data!.viewer.orders.items
    expect(order).toMatchObject({ id: orderId, status: 'pending_payment', totalCents: 2100 })
    expect(order!.items.map((i) => [i.product.sku, i.quantity]).sort()).toEqual(
      [
        [a.sku, 2],
        [b.sku, 1],
      ].sort(),
    )
  })

  it('serves its schema as SDL, linked from /docs', async () => {
    const res = await client(base).get('/graphql/schema.graphql')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/)
    const sdl = await res.text()
    for (const type of ['type Query', 'type Product', 'type Order', 'type Job']) expect(sdl).toContain(type)
    expect(await (await client(base).get('/docs')).text()).toContain('<a href="/graphql/schema.graphql">')
  })
})

describe('GraphQL: auth and roles, as REST', () => {
  it('an anonymous viewer is unauthorized; a bad token is 401 before anything runs', async () => {
    const anonymous = await graphql('{ viewer { id } }')
    expect(anonymous.status, anonymous.text).toBe(200)
    expect(anonymous.body.data).toEqual({ viewer: null })
    expect(codes(anonymous.body)).toEqual(['unauthorized'])

    const res = await client(base).post('/graphql', { query: '{ products { items { id } } }' }, { token: 'not.a.jwt' })
    await expectProblem(res, 401, 'unauthorized')
    expect(res.headers.get('www-authenticate')).toBe('Bearer')
  })

  it("refuses a customer the admin fields with REST's code, and answers them for an admin", async () => {
    const p = await product()
    const buyer = await signupCustomer(client(base), 'gql-roles')
    const jobs = await graphql('{ jobs(limit: 1) { items { id } } }', { token: buyer.accessToken })
    expect(jobs.status, jobs.text).toBe(200)
    expect(jobs.body.data).toBeNull()
    expect(codes(jobs.body)).toEqual(['forbidden'])

    const orders = await graphql(`{ product(id: "${p.id}") { sku orders { id } } }`, { token: buyer.accessToken })
    expect(orders.body.data).toEqual({ product: null })
    expect(codes(orders.body)).toEqual(['forbidden'])
    expect(orders.body.errors![0]!.path).toEqual(['product', 'orders'])

    const asAdmin = await graphql<{ jobs: { items: { status: string }[] }; product: { orders: unknown[] } }>(
      `{ jobs(limit: 2) { items { id name status attempts } nextCursor } product(id: "${p.id}") { orders(limit: 3) { id } } }`,
      { token: adminToken },
    )
    expect(asAdmin.status, asAdmin.text).toBe(200)
    expect(asAdmin.body.errors).toBeUndefined()
    expect(Array.isArray(asAdmin.body.data!.jobs.items)).toBe(true)
    expect(asAdmin.body.data!.product.orders).toEqual([])
  })

  it('bounds pages like REST: limit 1 to 100', async () => {
    for (const limit of [0, 101]) {
      const { status, body, text } = await graphql(`{ products(limit: ${limit}) { items { id } } }`)
      expect(status, text).toBe(200)
      expect(codes(body)).toEqual(['validation_failed'])
      expect(body.errors![0]!.extensions.errors![0]!.path).toBe('args.limit')
    }
  })
})

describe('GraphQL: limits', () => {
  /** A field that nests again forever: product → orders → items → product. */
  const nest = (levels: number): string => (levels === 0 ? 'sku' : `sku orders { items { product { ${nest(levels - 1)} } } }`)

  it('refuses a query nested too deep with 400 query_too_complex, before it runs', async () => {
    const { status, body, text } = await graphql(`{ products { items { ${nest(3)} } } }`, { token: adminToken })
    expect(status, text).toBe(400)
    expect(body.data).toBeUndefined()
    expect(codes(body)).toContain('query_too_complex')
    expect(body.errors![0]!.message).toMatch(/depth/i)
  })

  it('refuses a query over its cost with 400 query_too_complex', async () => {
    const fields = 'id sku name description priceCents currency stock category active version createdAt updatedAt'
    const copies = Array.from(
      { length: 8 },
      (_, i) => `p${i}: products { items { ${fields} orders { id status items { sku quantity product { ${fields} } } } } }`,
    ).join(' ')
    const { status, body, text } = await graphql(`{ ${copies} }`, { token: adminToken })
    expect(status, text).toBe(400)
    expect(codes(body)).toContain('query_too_complex')
    expect(body.errors!.map((e) => e.message).join(' ')).toMatch(/cost/i)
  })

  it('refuses a query that could answer too many objects with 400 query_too_complex, a page size given by a variable at its most', async () => {
    const lines = 'items { sku orders(limit: 20) { items { sku product { sku } } } }'
    // 100 products (the variable could ask for them) × 20 orders × 50 lines, each with its product: 200,000 objects.
    const big = await graphql(`query ($n: Int) { products(limit: $n) { ${lines} } }`, { token: adminToken, variables: { n: 2 } })
    expect(big.status, big.text).toBe(400)
    expect(big.body.data).toBeUndefined()
    expect(codes(big.body)).toContain('query_too_complex')
    expect(big.body.errors!.map((e) => e.message).join(' ')).toMatch(/could answer up to [\d,]+ objects/)
    // Smaller pages of the same: 5 × 5 × 50, about 2,500.
    const small = await graphql('{ products(limit: 5) { items { sku orders(limit: 5) { items { sku product { sku } } } } } }', {
      token: adminToken,
    })
    expect(small.status, small.text).toBe(200)
    expect(small.body.errors).toBeUndefined()
  })

  it('refuses too many aliases and too many tokens with 400 query_too_complex', async () => {
    const aliases = Array.from({ length: 11 }, (_, i) => `a${i}: products { nextCursor }`).join(' ')
    const many = await graphql(`{ ${aliases} }`)
    expect(many.status, many.text).toBe(400)
    expect(codes(many.body)).toContain('query_too_complex')

    const long = await graphql(`{ products { items { ${'id '.repeat(1200)} } } }`)
    expect(long.status, long.text).toBe(400)
    expect(codes(long.body)).toContain('query_too_complex')
  })

  it('stops a query at its statement budget with 400 query_too_complex', async () => {
    // Each aliased page of orders is two statements of its own (orders, then the items of a page that has some):
    // seven are 14, past the 12 allowed.
    const c = client(base)
    const buyer = await signupCustomer(c, 'gql-budget')
    const p = await product()
    const placed = await c.post(
      '/v1/orders',
      { items: [{ productId: p.id, quantity: 1 }] },
      { token: buyer.accessToken, headers: { 'Idempotency-Key': unique() } },
    )
    expect(placed.status).toBe(201)
    const pages = Array.from({ length: 7 }, (_, i) => `p${i}: orders(limit: ${i + 1}) { items { id } }`).join(' ')
    const { status, body, text } = await graphql(`{ viewer { ${pages} } }`, { token: buyer.accessToken })
    expect(status, text).toBe(400)
    expect(codes(body)).toContain('query_too_complex')
    expect(body.errors!.find((e) => e.extensions.code === 'query_too_complex')!.message).toMatch(/database statements/)
  })

  it('answers 400 validation_failed for a query that does not match the schema', async () => {
    const { status, body, text } = await graphql('{ products { items { nope } } }')
    expect(status, text).toBe(400)
    expect(codes(body)).toEqual(['validation_failed'])
  })

  it('refuses a request without a query, with a body that is not JSON or not JSON at all, or a mutation, with the REST codes', async () => {
    const c = client(base)
    const noQuery = await c.get('/graphql')
    expect(noQuery.status).toBe(400)
    expect(codes((await noQuery.json()) as GraphQLBody)).toEqual(['validation_failed'])

    const broken = await c.call('POST', '/graphql', { headers: { 'Content-Type': 'application/json' } })
    const notJson = await fetch(`${base}/graphql`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{nope' })
    const text = await notJson.text()
    expect(notJson.status, text).toBe(400)
    expect(codes(JSON.parse(text) as GraphQLBody)).toEqual(['invalid_json'])
    expect(text).not.toMatch(/SyntaxError|originalError/)
    expect(broken.status).toBe(400)

    await expectProblem(
      await fetch(`${base}/graphql`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{ products { nextCursor } }' }),
      415,
      'unsupported_media_type',
    )

    const mutation = await graphql('mutation { createProduct }', { token: adminToken })
    expect(mutation.status, mutation.text).toBe(400)
    expect(codes(mutation.body)).toEqual(['validation_failed'])
  })

  it(`allows introspection only outside production (${target})`, async () => {
    const { status, body, text } = await graphql('{ __schema { queryType { name } } }')
    if (target === 'embedded') {
      expect(status, text).toBe(200)
      expect(body.data).toEqual({ __schema: { queryType: { name: 'Query' } } })
    } else {
      expect(status, text).toBe(400)
      // One error per introspection field asked for (__schema, and queryType of type __Type).
      expect(new Set(codes(body))).toEqual(new Set(['validation_failed']))
      expect(body.errors![0]!.message).toMatch(/introspection/i)
    }
  })
})
