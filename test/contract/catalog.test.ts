import { beforeAll, describe, expect, inject, it } from 'vitest'
import { CONTRACT_ADMIN } from '../support/contract-setup.ts'
import { client, expectProblem, loginAdmin, signupCustomer } from './helpers.ts'

/*
 * The catalog (API.md § Catalog), black-box over HTTP on every target:
 * public reads with HTTP caching, admin writes, keyset pages.
 */

const base = inject('baseUrl')

interface ProductBody {
  id: string
  sku: string
  name: string
  description: string
  priceCents: number
  currency: string
  stock: number
  category: string
  active: boolean
  version: number
  createdAt: string
  updatedAt: string
}
interface PageBody {
  items: ProductBody[]
  nextCursor: string | null
}

let adminToken: string
const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`

beforeAll(async () => {
  adminToken = await loginAdmin(base, CONTRACT_ADMIN)
})

const admin = () => {
  const c = client(base)
  return {
    create: (body: Record<string, unknown>) => c.post('/v1/products', body, { token: adminToken }),
    patch: (id: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
      c.call('PATCH', `/v1/products/${id}`, { body, token: adminToken, headers }),
    archive: (id: string) => c.call('DELETE', `/v1/products/${id}`, { token: adminToken }),
  }
}

async function newProduct(overrides: Record<string, unknown> = {}): Promise<ProductBody> {
  const res = await admin().create({
    sku: `SKU-${unique()}`,
    name: 'Test product',
    priceCents: 1250,
    stock: 5,
    category: 'tests',
    ...overrides,
  })
  if (res.status !== 201) throw new Error(`create failed: ${res.status} ${await res.text()}`)
  return (await res.json()) as ProductBody
}

describe('catalog: reads', () => {
  it('GET a product: 200 with ETag and public Cache-Control; If-None-Match answers 304', async () => {
    const p = await newProduct({ description: 'A fine thing' })
    const res = await client(base).get(`/v1/products/${p.id}`)
    expect(res.status).toBe(200)
    expect(res.headers.get('etag')).toBe('"1"')
    expect(res.headers.get('cache-control')).toBe('public, max-age=5, stale-while-revalidate=30')
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    expect(await res.json()).toEqual(p)
    const again = await client(base).get(`/v1/products/${p.id}`, { headers: { 'If-None-Match': '"1"' } })
    expect(again.status).toBe(304)
    expect(again.headers.get('etag')).toBe('"1"')
    expect(await again.text()).toBe('')
    const weak = await client(base).get(`/v1/products/${p.id}`, { headers: { 'If-None-Match': 'W/"0", W/"1"' } })
    expect(weak.status).toBe(304)
    const fresh = await client(base).get(`/v1/products/${p.id}`, { headers: { 'If-None-Match': '"0"', 'X-Request-Id': 'catalog-read-7' } })
    expect(fresh.status).toBe(200)
    // The first read loaded the product; this one comes from L1, answered before routing (the catalog's read lane).
    const headersOf = (r: Response) => [...r.headers].filter(([name]) => name !== 'date' && name !== 'x-request-id')
    expect(headersOf(fresh)).toEqual(headersOf(res))
    expect(fresh.headers.get('x-request-id')).toBe('catalog-read-7')
    expect(again.headers.get('x-content-type-options')).toBe('nosniff')
    expect(await fresh.json()).toEqual(p)
  })

  it('unknown, malformed and archived ids are 404 not_found', async () => {
    await expectProblem(await client(base).get('/v1/products/01a201c0-0000-7000-8000-000000000000'), 404, 'not_found')
    await expectProblem(await client(base).get('/v1/products/not-a-uuid'), 404, 'not_found')
    const p = await newProduct()
    expect((await client(base).get(`/v1/products/${p.id}`)).status).toBe(200)
    expect((await admin().archive(p.id)).status).toBe(204)
    await expectProblem(await client(base).get(`/v1/products/${p.id}`), 404, 'not_found')
    expect((await admin().archive(p.id)).status).toBe(204)
  })

  it('lists active products newest first, page by page, each exactly once — also with products added between pages', async () => {
    const category = `c-${unique()}`
    const created: ProductBody[] = []
    for (let i = 0; i < 23; i++) created.push(await newProduct({ category, name: `Paged ${i}` }))
    const archived = created[5]!
    await admin().archive(archived.id)

    const seen: string[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const res = await client(base).get(`/v1/products?category=${category}&limit=10${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('cache-control')).toBe('public, max-age=5, stale-while-revalidate=30')
      const page = (await res.json()) as PageBody
      expect(page.items.length).toBeLessThanOrEqual(10)
      seen.push(...page.items.map((p) => p.id))
      cursor = page.nextCursor
      if (pages++ === 0) for (let i = 0; i < 3; i++) await newProduct({ category, name: `Late ${i}` })
    } while (cursor)

    const expected = created
      .filter((p) => p.id !== archived.id)
      .map((p) => p.id)
      .reverse()
    expect(seen).toEqual(expected)
    expect(new Set(seen).size).toBe(seen.length)
  })

  it('q matches name or SKU case-insensitively; wildcards are literal', async () => {
    const tag = unique()
    const a = await newProduct({ sku: `ZQ-${tag}-A`, name: 'Plain' })
    const b = await newProduct({ name: `Fancy ${tag.toUpperCase()} lamp` })
    const c = await newProduct({ name: `Percent 100% ${tag}` })
    const res = await client(base).get(`/v1/products?q=${tag.toUpperCase()}`)
    const ids = ((await res.json()) as PageBody).items.map((p) => p.id)
    expect(ids.sort()).toEqual([a.id, b.id, c.id].sort())
    const pct = ((await (await client(base).get(`/v1/products?q=${encodeURIComponent(`100% ${tag}`)}`)).json()) as PageBody).items
    expect(pct.map((p) => p.id)).toEqual([c.id])
    const none = ((await (await client(base).get(`/v1/products?q=${encodeURIComponent(`%${tag}_x`)}`)).json()) as PageBody).items
    expect(none).toEqual([])
  })

  it('a list answers 304 to its own ETag', async () => {
    const category = `e-${unique()}`
    await newProduct({ category })
    const res = await client(base).get(`/v1/products?category=${category}`)
    const etag = res.headers.get('etag')!
    expect(etag).toMatch(/^W\/"/)
    expect((await client(base).get(`/v1/products?category=${category}`, { headers: { 'If-None-Match': etag } })).status).toBe(304)
  })

  it('400 for a bad limit, a bad category or a cursor that is not ours', async () => {
    for (const q of ['limit=0', 'limit=101', 'limit=ten', 'category=Not%20A%20Slug', 'cursor=abc', 'cursor=AAAAAAAAAAAAAAAAAAAAAA%3D%3D']) {
      const problem = await expectProblem(await client(base).get(`/v1/products?${q}`), 400, 'validation_failed')
      expect(problem.errors?.[0]?.path).toMatch(/^query\./)
    }
  })
})

describe('catalog: writes', () => {
  it('create answers 201 with Location, the store currency and version 1', async () => {
    const sku = `NEW-${unique()}`
    const res = await admin().create({ sku, name: '  Trimmed  ', priceCents: 999, stock: 3, category: 'kitchen' })
    expect(res.status).toBe(201)
    const p = (await res.json()) as ProductBody
    expect(res.headers.get('location')).toBe(`/v1/products/${p.id}`)
    expect(p).toMatchObject({
      sku,
      name: 'Trimmed',
      description: '',
      priceCents: 999,
      currency: 'USD',
      stock: 3,
      category: 'kitchen',
      active: true,
      version: 1,
    })
  })

  it('409 sku_taken on create and on a patch to a taken SKU', async () => {
    const a = await newProduct()
    const b = await newProduct()
    await expectProblem(await admin().create({ sku: a.sku, name: 'Dup', priceCents: 1, stock: 1, category: 'tests' }), 409, 'sku_taken')
    await expectProblem(await admin().patch(b.id, { sku: a.sku }), 409, 'sku_taken')
  })

  it('a write is visible to the very next read, and bumps the version', async () => {
    const p = await newProduct({ stock: 5 })
    await client(base).get(`/v1/products/${p.id}`)
    const patched = await admin().patch(p.id, { stock: 9, name: 'Renamed' })
    expect(patched.status).toBe(200)
    expect(patched.headers.get('etag')).toBe('"2"')
    const now = (await (await client(base).get(`/v1/products/${p.id}`)).json()) as ProductBody
    expect(now).toMatchObject({ stock: 9, name: 'Renamed', version: 2 })
    const listed = ((await (await client(base).get(`/v1/products?q=${p.sku}`)).json()) as PageBody).items
    expect(listed[0]).toMatchObject({ id: p.id, stock: 9, version: 2 })
  })

  it('If-Match: the current version applies, a stale one is 412 version_mismatch with the current ETag', async () => {
    const p = await newProduct()
    expect((await admin().patch(p.id, { priceCents: 2000 }, { 'If-Match': '"1"' })).status).toBe(200)
    const stale = await admin().patch(p.id, { priceCents: 3000 }, { 'If-Match': '"1"' })
    await expectProblem(stale, 412, 'version_mismatch')
    expect(stale.headers.get('etag')).toBe('"2"')
    expect(((await (await client(base).get(`/v1/products/${p.id}`)).json()) as ProductBody).priceCents).toBe(2000)
    await expectProblem(await admin().patch(p.id, { priceCents: 3000 }, { 'If-Match': 'W/"2"' }), 412, 'version_mismatch')
    expect((await admin().patch(p.id, { priceCents: 3000 }, { 'If-Match': '*' })).status).toBe(200)
  })

  it('PATCH and DELETE of an unknown product are 404', async () => {
    await expectProblem(await admin().patch('01a201c0-0000-7000-8000-000000000001', { stock: 1 }), 404, 'not_found')
    await expectProblem(await admin().archive('01a201c0-0000-7000-8000-000000000001'), 404, 'not_found')
  })

  it('an archived product can be restored with active: true', async () => {
    const p = await newProduct()
    await admin().archive(p.id)
    expect((await admin().patch(p.id, { active: true })).status).toBe(200)
    expect((await client(base).get(`/v1/products/${p.id}`)).status).toBe(200)
  })

  it('400 validation_failed listing every bad field; the currency and the version cannot be set', async () => {
    const problem = await expectProblem(
      await admin().create({ sku: 'bad sku!', name: '', priceCents: -1, stock: 1.5, category: 'Bad Cat', currency: 'EUR', version: 7 }),
      400,
      'validation_failed',
    )
    expect(problem.errors?.map((e) => e.path).sort()).toEqual(
      ['body.category', 'body.currency', 'body.name', 'body.priceCents', 'body.sku', 'body.stock', 'body.version'].sort(),
    )
    const p = await newProduct()
    await expectProblem(await admin().patch(p.id, {}), 400, 'validation_failed')
    await expectProblem(await admin().patch(p.id, { id: 'other' }), 400, 'validation_failed')
  })
})

describe('catalog: security', () => {
  it('admin routes: 401 without a token, 403 for a customer, and nothing changes', async () => {
    const p = await newProduct({ stock: 4 })
    const customer = await signupCustomer(client(base))
    const anon = client(base)
    const c = client(base)
    const body = { sku: `X-${unique()}`, name: 'No', priceCents: 1, stock: 1, category: 'tests' }
    await expectProblem(await anon.post('/v1/products', body), 401, 'unauthorized')
    await expectProblem(await c.post('/v1/products', body, { token: customer.accessToken }), 403, 'forbidden')
    await expectProblem(await anon.call('PATCH', `/v1/products/${p.id}`, { body: { stock: 0 } }), 401, 'unauthorized')
    await expectProblem(
      await c.call('PATCH', `/v1/products/${p.id}`, { body: { stock: 0 }, token: customer.accessToken }),
      403,
      'forbidden',
    )
    await expectProblem(await anon.call('DELETE', `/v1/products/${p.id}`), 401, 'unauthorized')
    await expectProblem(await c.call('DELETE', `/v1/products/${p.id}`, { token: customer.accessToken }), 403, 'forbidden')
    const after = (await (await client(base).get(`/v1/products/${p.id}`)).json()) as ProductBody
    expect(after).toMatchObject({ stock: 4, version: 1, active: true })
    expect(((await (await client(base).get(`/v1/products?q=${body.sku}`)).json()) as PageBody).items).toEqual([])
  })

  it('SQL in a search or a filter is just text', async () => {
    for (const q of ["' OR 1=1 --", "'; DROP TABLE products; --", '\\', '%%%']) {
      const res = await client(base).get(`/v1/products?q=${encodeURIComponent(q)}`)
      expect(res.status).toBe(200)
      expect(((await res.json()) as PageBody).items).toEqual([])
    }
    expect((await client(base).get('/v1/products?limit=1')).status).toBe(200)
  })
})
