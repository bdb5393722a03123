import { beforeAll, describe, expect, inject, it, vi } from 'vitest'
import { CONTRACT_ADMIN } from '../support/contract-setup.ts'
import { client, expectProblem, loginAdmin, type SessionBody, signupCustomer } from './helpers.ts'

/*
 * Orders and background jobs (API.md § Orders, § Background jobs),
 * black-box over HTTP on every target — with the embedded runner (embedded,
 * bun) and with QStash (node, workerd).
 */

const base = inject('baseUrl')
const orderTtl = inject('orderTtlSeconds')

interface OrderBody {
  id: string
  status: string
  items: { productId: string; sku: string; name: string; unitPriceCents: number; quantity: number; lineTotalCents: number }[]
  totalCents: number
  currency: string
  createdAt: string
  updatedAt: string
  expiresAt: string
}

let adminToken: string
const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`

beforeAll(async () => {
  adminToken = await loginAdmin(base, CONTRACT_ADMIN)
})

async function product(stock: number, priceCents = 1000): Promise<{ id: string; sku: string }> {
  const sku = `ORD-${unique()}`
  const res = await client(base).post(
    '/v1/products',
    { sku, name: `Orderable ${sku}`, priceCents, stock, category: 'orders' },
    { token: adminToken },
  )
  if (res.status !== 201) throw new Error(`product: ${res.status} ${await res.text()}`)
  return { id: ((await res.json()) as { id: string }).id, sku }
}

const stockOf = async (id: string) => ((await (await client(base).get(`/v1/products/${id}`)).json()) as { stock: number }).stock

function customer() {
  const c = client(base)
  let session: SessionBody | undefined
  return {
    async init() {
      session = await signupCustomer(c, 'buyer')
      return this
    },
    get token() {
      return session!.accessToken
    },
    get email() {
      return session!.user.email
    },
    order: (items: { productId: string; quantity: number }[], key: string = unique()) =>
      c.post('/v1/orders', { items }, { token: session!.accessToken, headers: { 'Idempotency-Key': key } }),
    pay: (id: string, paymentToken: string, key: string = unique()) =>
      c.post(`/v1/orders/${id}/pay`, { paymentToken }, { token: session!.accessToken, headers: { 'Idempotency-Key': key } }),
    get: (id: string) => c.get(`/v1/orders/${id}`, { token: session!.accessToken }),
    cancel: (id: string) => c.post(`/v1/orders/${id}/cancel`, undefined, { token: session!.accessToken }),
    list: (query = '') => c.get(`/v1/orders${query}`, { token: session!.accessToken }),
  }
}

/** Polls an order until it leaves `payment_processing` (jobs run in the background). */
function settled(buyer: ReturnType<typeof customer>, id: string, want: string, timeoutMs = 20_000): Promise<OrderBody> {
  return vi.waitFor(
    async () => {
      const order = (await (await buyer.get(id)).json()) as OrderBody
      if (order.status !== want) throw new Error(`order ${id} is ${order.status}, not ${want}, after ${timeoutMs} ms`)
      return order
    },
    { timeout: timeoutMs, interval: 100 },
  )
}

describe('checkout', () => {
  it('201 with the order in pending_payment, prices from the catalog, stock reserved, and a Location', async () => {
    const a = await product(5, 1250)
    const b = await product(9, 399)
    const buyer = await customer().init()
    const res = await buyer.order([
      { productId: a.id, quantity: 2 },
      { productId: b.id, quantity: 3 },
    ])
    expect(res.status).toBe(201)
    const order = (await res.json()) as OrderBody
    expect(res.headers.get('location')).toBe(`/v1/orders/${order.id}`)
    expect(order).toMatchObject({ status: 'pending_payment', totalCents: 2 * 1250 + 3 * 399, currency: 'USD' })
    expect(order.items).toEqual([
      { productId: a.id, sku: a.sku, name: `Orderable ${a.sku}`, unitPriceCents: 1250, quantity: 2, lineTotalCents: 2500 },
      { productId: b.id, sku: b.sku, name: `Orderable ${b.sku}`, unitPriceCents: 399, quantity: 3, lineTotalCents: 1197 },
    ])
    expect(new Date(order.expiresAt).getTime() - new Date(order.createdAt).getTime()).toBe(orderTtl * 1000)
    expect(await stockOf(a.id)).toBe(3)
    expect(await stockOf(b.id)).toBe(6)
    expect(((await (await buyer.get(order.id)).json()) as OrderBody).id).toBe(order.id)
  })

  it('all or nothing: one short line reserves nothing, 409 insufficient_stock names it', async () => {
    const a = await product(5)
    const b = await product(1)
    const buyer = await customer().init()
    const res = await buyer.order([
      { productId: a.id, quantity: 2 },
      { productId: b.id, quantity: 2 },
    ])
    const problem = await expectProblem(res, 409, 'insufficient_stock')
    expect(problem.errors).toEqual([{ path: 'body.items.1.quantity', message: `only 1 of ${b.sku} (${b.id}) left` }])
    expect(await stockOf(a.id)).toBe(5)
    expect(await stockOf(b.id)).toBe(1)
  })

  it('422 unknown_product for an unknown or archived product', async () => {
    const a = await product(5)
    const gone = await product(5)
    await client(base).call('DELETE', `/v1/products/${gone.id}`, { token: adminToken })
    const buyer = await customer().init()
    const problem = await expectProblem(
      await buyer.order([
        { productId: a.id, quantity: 1 },
        { productId: gone.id, quantity: 1 },
        { productId: '01a201c0-0000-7000-8000-0000000000aa', quantity: 1 },
      ]),
      422,
      'unknown_product',
    )
    expect(problem.errors?.map((e) => e.path)).toEqual(['body.items.1.productId', 'body.items.2.productId'])
    expect(await stockOf(a.id)).toBe(5)
  })

  it('400 for an empty order, more than 50 lines, a product twice, a quantity out of range, or a price in the body', async () => {
    const a = await product(5)
    const buyer = await customer().init()
    const line = (quantity = 1) => ({ productId: a.id, quantity })
    for (const items of [
      [],
      Array.from({ length: 51 }, () => line()),
      [line(), line()],
      [line(0)],
      [line(101)],
      [{ ...line(), priceCents: 1 }],
    ]) {
      await expectProblem(await buyer.order(items as { productId: string; quantity: number }[]), 400, 'validation_failed')
    }
    expect(await stockOf(a.id)).toBe(5)
  })

  it('no oversell: 200 concurrent checkouts for a product with stock 10 give exactly 10 orders', async () => {
    const p = await product(10)
    const buyers = await Promise.all(Array.from({ length: 5 }, () => customer().init()))
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => buyers[i % 5]!.order([{ productId: p.id, quantity: 1 }])))
    const statuses = answers.map((r) => r.status)
    expect(statuses.filter((s) => s === 201)).toHaveLength(10)
    expect(statuses.filter((s) => s === 409)).toHaveLength(190)
    for (const r of answers.filter((x) => x.status === 409).slice(0, 3))
      expect(((await r.json()) as { code: string }).code).toBe('insufficient_stock')
    expect(await stockOf(p.id)).toBe(0)
  })
})

describe('idempotency', () => {
  it('the same key and body replay the first answer with Idempotent-Replayed: true, and nothing happens twice', async () => {
    const p = await product(10)
    const buyer = await customer().init()
    const key = `k-${unique()}`
    const first = await buyer.order([{ productId: p.id, quantity: 2 }], key)
    expect(first.status).toBe(201)
    const again = await buyer.order([{ productId: p.id, quantity: 2 }], key)
    expect(again.status).toBe(201)
    expect(again.headers.get('idempotent-replayed')).toBe('true')
    expect(again.headers.get('location')).toBe(first.headers.get('location'))
    expect(await again.json()).toEqual(await first.json())
    expect(await stockOf(p.id)).toBe(8)
  })

  it('the same key with a different body is 422 idempotency_key_reused', async () => {
    const p = await product(10)
    const buyer = await customer().init()
    const key = `k-${unique()}`
    expect((await buyer.order([{ productId: p.id, quantity: 1 }], key)).status).toBe(201)
    await expectProblem(await buyer.order([{ productId: p.id, quantity: 3 }], key), 422, 'idempotency_key_reused')
    expect(await stockOf(p.id)).toBe(9)
  })

  it('400 idempotency_key_missing without the header', async () => {
    const p = await product(10)
    const buyer = await customer().init()
    const res = await client(base).post('/v1/orders', { items: [{ productId: p.id, quantity: 1 }] }, { token: buyer.token })
    await expectProblem(res, 400, 'idempotency_key_missing')
    expect(await stockOf(p.id)).toBe(10)
  })

  it('a key of 1 to 255 visible ASCII characters is taken; any other is 400 validation_failed and reserves nothing', async () => {
    const p = await product(10)
    const buyer = await customer().init()
    const items = [{ productId: p.id, quantity: 1 }]
    for (const bad of ['two words', 'k'.repeat(256), 'cl\u00e9', 'tab\there']) {
      const problem = await expectProblem(await buyer.order(items, bad), 400, 'validation_failed')
      expect(problem.errors?.map((e) => e.path)).toEqual(['headers.idempotency-key'])
    }
    expect(await stockOf(p.id)).toBe(10)
    for (const good of ['!', `~${'k'.repeat(254)}`]) expect((await buyer.order(items, good)).status).toBe(201)
    expect(await stockOf(p.id)).toBe(8)
  })

  it('concurrent duplicates have one effect: one order, the others replay it or are told it is in progress', async () => {
    const p = await product(50)
    const buyer = await customer().init()
    const key = `k-${unique()}`
    const answers = await Promise.all(Array.from({ length: 12 }, () => buyer.order([{ productId: p.id, quantity: 1 }], key)))
    const created = new Set<string>()
    for (const r of answers) {
      if (r.status === 201) created.add(((await r.json()) as OrderBody).id)
      else await expectProblem(r, 409, 'idempotency_request_in_progress')
    }
    expect(created.size).toBe(1)
    expect(await stockOf(p.id)).toBe(49)
    const listed = ((await (await buyer.list()).json()) as { items: OrderBody[] }).items
    expect(listed.filter((o) => o.items[0]?.productId === p.id)).toHaveLength(1)
  })

  it('keys are scoped per user', async () => {
    const p = await product(10)
    const [a, b] = await Promise.all([customer().init(), customer().init()])
    const key = `shared-${unique()}`
    const ra = await a.order([{ productId: p.id, quantity: 1 }], key)
    const rb = await b.order([{ productId: p.id, quantity: 1 }], key)
    expect([ra.status, rb.status]).toEqual([201, 201])
    expect(rb.headers.get('idempotent-replayed')).toBeNull()
    expect(await stockOf(p.id)).toBe(8)
  })
})

describe('orders: reading and access', () => {
  it('a customer sees only their own orders, newest first, page by page; another customer gets 404; an admin sees all', async () => {
    const p = await product(20)
    const [owner, other] = await Promise.all([customer().init(), customer().init()])
    const ids: string[] = []
    for (let i = 0; i < 5; i++) ids.push(((await (await owner.order([{ productId: p.id, quantity: 1 }])).json()) as OrderBody).id)
    const first = (await (await owner.list('?limit=3')).json()) as { items: OrderBody[]; nextCursor: string }
    const second = (await (await owner.list(`?limit=3&cursor=${first.nextCursor}`)).json()) as {
      items: OrderBody[]
      nextCursor: string | null
    }
    expect([...first.items, ...second.items].map((o) => o.id)).toEqual([...ids].reverse())
    expect(second.nextCursor).toBeNull()
    expect(((await (await other.list()).json()) as { items: OrderBody[] }).items).toEqual([])
    await expectProblem(await other.get(ids[0]!), 404, 'not_found')
    await expectProblem(await other.cancel(ids[0]!), 404, 'not_found')
    await expectProblem(await other.pay(ids[0]!, 'tok_ok'), 404, 'not_found')
    const asAdmin = await client(base).get(`/v1/orders/${ids[0]}`, { token: adminToken })
    expect(asAdmin.status).toBe(200)
    await expectProblem(await owner.get('not-an-id'), 404, 'not_found')
    await expectProblem(await client(base).get(`/v1/orders/${ids[0]}`), 401, 'unauthorized')
  })
})

describe('payment and the order state machine', () => {
  it('tok_ok: 202 payment_processing, then paid, with exactly one confirmation email; paid orders cannot be cancelled; an admin fulfils', async () => {
    const p = await product(5, 2500)
    const buyer = await customer().init()
    const order = (await (await buyer.order([{ productId: p.id, quantity: 2 }])).json()) as OrderBody
    const pay = await buyer.pay(order.id, 'tok_ok')
    expect(pay.status).toBe(202)
    expect(((await pay.json()) as OrderBody).status).toBe('payment_processing')
    await settled(buyer, order.id, 'paid')
    await expectProblem(await buyer.cancel(order.id), 409, 'invalid_state')
    await expectProblem(await buyer.pay(order.id, 'tok_ok'), 409, 'invalid_state')

    type Mail = { to: string; orderId: string; template: string }
    const mails = async () => {
      const page = (await (await client(base).get('/v1/admin/emails?limit=100', { token: adminToken })).json()) as { items: Mail[] }
      return page.items.filter((m) => m.orderId === order.id)
    }
    await expect
      .poll(mails, { timeout: 10_000, interval: 100 })
      .toEqual([expect.objectContaining({ to: buyer.email, orderId: order.id, template: 'order_paid' })])

    await expectProblem(await client(base).post(`/v1/orders/${order.id}/fulfil`, undefined, { token: buyer.token }), 403, 'forbidden')
    const fulfilled = await client(base).post(`/v1/orders/${order.id}/fulfil`, undefined, { token: adminToken })
    expect(fulfilled.status).toBe(200)
    expect(((await fulfilled.json()) as OrderBody).status).toBe('fulfilled')
    expect(await stockOf(p.id)).toBe(3)
  })

  it('tok_declined: payment_failed, payable again, and then paid', async () => {
    const p = await product(5)
    const buyer = await customer().init()
    const order = (await (await buyer.order([{ productId: p.id, quantity: 1 }])).json()) as OrderBody
    expect((await buyer.pay(order.id, 'tok_declined')).status).toBe(202)
    await settled(buyer, order.id, 'payment_failed')
    expect((await buyer.pay(order.id, 'tok_ok')).status).toBe(202)
    await settled(buyer, order.id, 'paid')
  })

  it('tok_flaky: fails twice, is retried, and ends paid', async () => {
    const p = await product(5)
    const buyer = await customer().init()
    const order = (await (await buyer.order([{ productId: p.id, quantity: 1 }])).json()) as OrderBody
    expect((await buyer.pay(order.id, 'tok_flaky')).status).toBe(202)
    await settled(buyer, order.id, 'paid', 30_000)
  })

  it('paying twice with one key starts one payment; two keys at once: one wins, the other is 409 invalid_state', async () => {
    const p = await product(5)
    const buyer = await customer().init()
    const order = (await (await buyer.order([{ productId: p.id, quantity: 1 }])).json()) as OrderBody
    const key = `pay-${unique()}`
    const first = await buyer.pay(order.id, 'tok_ok', key)
    const replay = await buyer.pay(order.id, 'tok_ok', key)
    expect([first.status, replay.status]).toEqual([202, 202])
    expect(replay.headers.get('idempotent-replayed')).toBe('true')

    const second = (await (await buyer.order([{ productId: p.id, quantity: 1 }])).json()) as OrderBody
    const race = await Promise.all([buyer.pay(second.id, 'tok_ok'), buyer.pay(second.id, 'tok_ok')])
    expect(race.map((r) => r.status).sort()).toEqual([202, 409])
  })

  it('cancel releases the stock once; cancelling again is 409', async () => {
    const p = await product(4)
    const buyer = await customer().init()
    const order = (await (await buyer.order([{ productId: p.id, quantity: 3 }])).json()) as OrderBody
    expect(await stockOf(p.id)).toBe(1)
    const cancels = await Promise.all([buyer.cancel(order.id), buyer.cancel(order.id), buyer.cancel(order.id)])
    expect(cancels.map((r) => r.status).sort()).toEqual([200, 409, 409])
    expect(await stockOf(p.id)).toBe(4)
    expect(((await (await buyer.get(order.id)).json()) as OrderBody).status).toBe('cancelled')
  })

  it('an admin can cancel a customer’s order', async () => {
    const p = await product(2)
    const buyer = await customer().init()
    const order = (await (await buyer.order([{ productId: p.id, quantity: 2 }])).json()) as OrderBody
    const res = await client(base).post(`/v1/orders/${order.id}/cancel`, undefined, { token: adminToken })
    expect(res.status).toBe(200)
    expect(await stockOf(p.id)).toBe(2)
  })

  it(
    'an unpaid order expires after ORDER_TTL_SECONDS and its stock comes back',
    async () => {
      const p = await product(3)
      const buyer = await customer().init()
      const order = (await (await buyer.order([{ productId: p.id, quantity: 3 }])).json()) as OrderBody
      expect(await stockOf(p.id)).toBe(0)
      const expired = await settled(buyer, order.id, 'expired', (orderTtl + 15) * 1000)
      expect(new Date(expired.updatedAt).getTime()).toBeGreaterThanOrEqual(new Date(order.expiresAt).getTime())
      expect(await stockOf(p.id)).toBe(3)
      await expectProblem(await buyer.pay(order.id, 'tok_ok'), 409, 'invalid_state')
    },
    (orderTtl + 30) * 1000,
  )
})
