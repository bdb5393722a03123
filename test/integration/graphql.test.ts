import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rowsOf } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { GRAPHQL_LIMITS } from '../../src/graphql/index.ts'
import { migratedDatabase } from '../support/databases.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/*
 * The GraphQL read API over a real PostgreSQL: what a query costs the
 * database, counted in statements the pool sent (no N+1: loaders batch per
 * request), and the per-request statement budget.
 */

const ADMIN = { email: 'graphql-admin@example.test', password: 'graphql admin password' }
let t: TestApp
let adminToken: string
let customerToken: string

const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`

async function call(path: string, init: { method?: string; body?: unknown; token?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...init.headers }
  if (init.body !== undefined) headers['Content-Type'] = 'application/json'
  if (init.token) headers.Authorization = `Bearer ${init.token}`
  return t.app.request(path, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  })
}

const graphql = (query: string, token?: string) => call('/graphql', { method: 'POST', body: { query }, token })

/** The statements the pool sent while `work` ran. */
async function statements<T>(work: () => Promise<T>): Promise<{ result: T; count: number }> {
  const before = t.database.stats!().queries
  const result = await work()
  return { result, count: t.database.stats!().queries - before }
}

beforeAll(async () => {
  const url = await migratedDatabase('graphql')
  const database = createPostgresDatabase({ url, poolMax: 5, timeoutMs: 2000, statementTimeoutMs: 5000 })
  t = await createTestApp({ database, env: { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password } })
  const { ensureAdmin } = await import('../../src/features/accounts/index.ts')
  await ensureAdmin(t.services.accounts(t.services.scope()), ADMIN)
  adminToken = ((await (await call('/v1/auth/login', { method: 'POST', body: ADMIN })).json()) as { accessToken: string }).accessToken
  const signup = await call('/v1/auth/signup', {
    method: 'POST',
    body: { email: `gql.${unique()}@example.test`, password: 'a perfectly fine password', name: 'Buyer' },
  })
  customerToken = ((await signup.json()) as { accessToken: string }).accessToken

  // Ten products; twenty orders of two or three of them each.
  const products: string[] = []
  for (let i = 0; i < 10; i++) {
    const res = await call('/v1/products', {
      method: 'POST',
      token: adminToken,
      body: { sku: `GQL-${unique()}`, name: `Thing ${i}`, priceCents: 100 + i, stock: 1000, category: 'graphql' },
    })
    expect(res.status).toBe(201)
    products.push(((await res.json()) as { id: string }).id)
  }
  for (let i = 0; i < 20; i++) {
    const lines = [0, 1, 2].slice(0, 2 + (i % 2)).map((k) => ({ productId: products[(i + k * 3) % 10]!, quantity: 1 + k }))
    const res = await call('/v1/orders', {
      method: 'POST',
      token: customerToken,
      body: { items: lines },
      headers: { 'Idempotency-Key': unique() },
    })
    expect(res.status).toBe(201)
  }
})
afterAll(() => t?.close())

describe('GraphQL against PostgreSQL', () => {
  it('20 orders with their items and products cost 3 statements: orders, items, products (no N+1)', async () => {
    const { result, count } = await statements(() =>
      graphql(
        '{ viewer { orders(limit: 20) { items { id status totalCents items { quantity lineTotalCents product { id name priceCents } } } } } }',
        customerToken,
      ),
    )
    const body = (await result.json()) as {
      data: { viewer: { orders: { items: { items: { product: { name: string } | null }[] }[] } } }
      errors?: unknown
    }
    expect(result.status, JSON.stringify(body)).toBe(200)
    expect(body.errors).toBeUndefined()
    const orders = body.data.viewer.orders.items
    expect(orders).toHaveLength(20)
    expect(orders.flatMap((o) => o.items).length).toBe(50)
    expect(orders.every((o) => o.items.every((i) => i.product?.name.startsWith('Thing')))).toBe(true)
    expect(count).toBeLessThanOrEqual(4)
    expect(count).toBe(3)
  })

  it("an admin's products with their latest orders, those orders' items and products: at most 4 statements", async () => {
    const { result, count } = await statements(() =>
      graphql(
        '{ products(limit: 10, category: "graphql") { items { id sku orders(limit: 5) { id items { quantity product { sku } } } } } }',
        adminToken,
      ),
    )
    const body = (await result.json()) as { data: { products: { items: { id: string; orders: { id: string }[] }[] } }; errors?: unknown }
    expect(result.status, JSON.stringify(body)).toBe(200)
    expect(body.errors).toBeUndefined()
    expect(body.data.products.items).toHaveLength(10)
    // Every product is in four or six of the orders: each gets its latest five (or four), newest first.
    for (const p of body.data.products.items) {
      const lines = await t.database.db.execute(
        sql`select order_id from order_items where product_id = ${p.id} order by order_id desc limit 5`,
      )
      expect(p.orders.map((o) => o.id)).toEqual(rowsOf<{ order_id: string }>(lines).map((r) => r.order_id))
      expect(p.orders.length).toBeGreaterThanOrEqual(4)
    }
    expect(count).toBeLessThanOrEqual(4)
  })

  it(`a query that needs more than ${GRAPHQL_LIMITS.statements} statements is stopped at the budget: 400 query_too_complex`, async () => {
    // Each aliased page is two statements of its own (orders, items): seven of them are 14.
    const pages = Array.from({ length: 7 }, (_, i) => `p${i}: orders(limit: ${i + 1}) { items { id } }`).join(' ')
    const { result, count } = await statements(() => graphql(`{ viewer { ${pages} } }`, customerToken))
    const body = (await result.json()) as { errors: { message: string; extensions: { code: string } }[] }
    expect(result.status, JSON.stringify(body) + JSON.stringify(t.logs.filter((l) => l.level === 'error'))).toBe(400)
    expect(body.errors.map((e) => e.extensions.code)).toContain('query_too_complex')
    expect(body.errors.find((e) => e.extensions.code === 'query_too_complex')?.message).toMatch(/more than 12 database statements/)
    expect(count).toBeLessThanOrEqual(GRAPHQL_LIMITS.statements)
  })
})
