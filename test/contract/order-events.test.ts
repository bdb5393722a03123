import { afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest'
import { CONTRACT_ADMIN, CONTRACT_SSE_HEARTBEAT_MS, CONTRACT_SSE_MAX_STREAMS_PER_USER } from '../support/contract-setup.ts'
import { client, expectProblem, loginAdmin, openEventStream, type SseEvent, signupCustomer } from './helpers.ts'

/*
 * Order events as server-sent events (API.md § Order events), black-box
 * over HTTP on every target: LISTEN/NOTIFY on PostgreSQL (bun, node), PGlite's
 * in-process NOTIFY (embedded), the poll of the record (workerd).
 */

const base = inject('baseUrl')
const target = inject('target')

let adminToken: string
const unique = () => `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`
const streams: { close(): void }[] = []
afterEach(() => {
  for (const s of streams.splice(0)) s.close()
})

beforeAll(async () => {
  adminToken = await loginAdmin(base, CONTRACT_ADMIN)
})

/** A customer with one order in pending_payment. */
async function orderOfNewCustomer() {
  const c = client(base)
  const session = await signupCustomer(c, 'watcher')
  const sku = `SSE-${unique()}`
  const created = await c.post(
    '/v1/products',
    { sku, name: `Streamed ${sku}`, priceCents: 500, stock: 10, category: 'events' },
    { token: adminToken },
  )
  if (created.status !== 201) throw new Error(`product: ${created.status} ${await created.text()}`)
  const productId = ((await created.json()) as { id: string }).id
  const res = await c.post(
    '/v1/orders',
    { items: [{ productId, quantity: 1 }] },
    { token: session.accessToken, headers: { 'Idempotency-Key': unique() } },
  )
  if (res.status !== 201) throw new Error(`order: ${res.status} ${await res.text()}`)
  const orderId = ((await res.json()) as { id: string }).id
  const pay = (paymentToken = 'tok_ok') =>
    c.post(`/v1/orders/${orderId}/pay`, { paymentToken }, { token: session.accessToken, headers: { 'Idempotency-Key': unique() } })
  return { c, token: session.accessToken, orderId, pay }
}

async function open(path: string, opts: Parameters<typeof openEventStream>[2] = {}) {
  const stream = await openEventStream(base, path, opts)
  streams.push(stream)
  return stream
}

const statuses = (events: SseEvent[], orderId?: string) =>
  events.map((e) => JSON.parse(e.data) as { orderId: string; status: string }).filter((e) => orderId === undefined || e.orderId === orderId)

/** Waits until the stream has said it is open (its `retry:` line comes after it subscribed). */
const opened = (s: { retry(): number | undefined }) => vi.waitFor(() => expect(s.retry()).toBe(1000), { timeout: 10_000, interval: 20 })

/** `edgeshop_sse_streams` from /metrics (Bun and Node; Workers have no /metrics). */
async function openStreamsGauge(): Promise<number> {
  const text = await (await client(base).get('/metrics')).text()
  const match = text.match(/^edgeshop_sse_streams (\d+)$/m)
  if (!match) throw new Error('no edgeshop_sse_streams in /metrics')
  return Number(match[1])
}

describe('GET /v1/orders/{id}/events', () => {
  it('streams payment_processing then paid as the order is paid, with rising ids', async () => {
    const { token, orderId, pay } = await orderOfNewCustomer()
    const stream = await open(`/v1/orders/${orderId}/events`, { token })
    expect(stream.res.status).toBe(200)
    expect(stream.res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    expect(stream.res.headers.get('x-request-id')).toBeTruthy()
    await opened(stream)
    expect((await pay()).status).toBe(202)

    await vi.waitFor(() => expect(statuses(stream.events).map((e) => e.status)).toEqual(['payment_processing', 'paid']), {
      timeout: 20_000,
      interval: 50,
    })
    expect(stream.events.map((e) => e.event)).toEqual(['status', 'status'])
    const [first, second] = stream.events.map((e) => Number(e.id))
    expect(first).toBeGreaterThan(0)
    expect(second).toBeGreaterThan(first!)
    expect(JSON.parse(stream.events[1]!.data)).toEqual({
      orderId,
      status: 'paid',
      previousStatus: 'payment_processing',
      at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    })
  })

  it('with Last-Event-ID, sends only what came after that event; without it, the whole history', async () => {
    const { token, orderId, pay } = await orderOfNewCustomer()
    expect((await pay()).status).toBe(202)
    const history = await open(`/v1/orders/${orderId}/events`, { token })
    await vi.waitFor(() => expect(history.events).toHaveLength(2), { timeout: 20_000, interval: 50 })
    history.close()

    const resumed = await open(`/v1/orders/${orderId}/events`, { token, lastEventId: history.events[0]!.id })
    await opened(resumed)
    await vi.waitFor(() => expect(resumed.events).toHaveLength(1), { timeout: 10_000, interval: 50 })
    expect(resumed.events[0]).toMatchObject({ id: history.events[1]!.id, event: 'status' })
    expect(statuses(resumed.events)[0]!.status).toBe('paid')

    const caughtUp = await open(`/v1/orders/${orderId}/events`, { token, lastEventId: history.events[1]!.id })
    await opened(caughtUp)
    // Nothing is repeated: the next change arrives as the only event.
    expect((await client(base).post(`/v1/orders/${orderId}/fulfil`, undefined, { token: adminToken })).status).toBe(200)
    await vi.waitFor(() => expect(statuses(caughtUp.events).map((e) => e.status)).toEqual(['fulfilled']), { timeout: 10_000, interval: 50 })
  })

  it('sends a heartbeat comment while nothing happens', async () => {
    const { token, orderId } = await orderOfNewCustomer()
    const stream = await open(`/v1/orders/${orderId}/events`, { token })
    await vi.waitFor(() => expect(stream.comments).toContain('heartbeat'), { timeout: CONTRACT_SSE_HEARTBEAT_MS * 5, interval: 50 })
    expect(stream.events).toEqual([])
  })

  it('404 for someone else’s order or an unknown one, 401 without a token, 400 for a bad Last-Event-ID', async () => {
    const { orderId } = await orderOfNewCustomer()
    const other = await signupCustomer(client(base), 'stranger')
    await expectProblem((await open(`/v1/orders/${orderId}/events`, { token: other.accessToken })).res, 404, 'not_found')
    await expectProblem(
      (await open('/v1/orders/01a201c0-0000-7000-8000-0000000000aa/events', { token: other.accessToken })).res,
      404,
      'not_found',
    )
    await expectProblem((await open('/v1/orders/not-an-id/events', { token: other.accessToken })).res, 404, 'not_found')
    await expectProblem((await open(`/v1/orders/${orderId}/events`)).res, 401, 'unauthorized')
    for (const lastEventId of ['abc', '-1', '1.5', '9'.repeat(40)]) {
      const problem = await expectProblem(
        (await open(`/v1/orders/${orderId}/events`, { token: other.accessToken, lastEventId })).res,
        400,
        'validation_failed',
      )
      expect(problem.errors?.map((e) => e.path)).toEqual(['headers.last-event-id'])
    }
  })

  it(`holds at most ${CONTRACT_SSE_MAX_STREAMS_PER_USER} streams per user (429 too_many_streams); a client that hangs up frees its place`, async () => {
    const { token, orderId } = await orderOfNewCustomer()
    const path = `/v1/orders/${orderId}/events`
    const held = []
    for (let i = 0; i < CONTRACT_SSE_MAX_STREAMS_PER_USER; i++) {
      const s = await open(path, { token })
      expect(s.res.status).toBe(200)
      await opened(s)
      held.push(s)
    }
    if (target !== 'workerd') expect(await openStreamsGauge()).toBeGreaterThanOrEqual(held.length)
    const refused = await open(path, { token })
    const problem = await expectProblem(refused.res, 429, 'too_many_streams')
    expect(problem.detail).toMatch(/per user/)
    expect(refused.res.headers.get('retry-after')).toMatch(/^\d+$/)

    for (const s of held) s.close()
    // The server notices the hang-ups: every place is free again, and (Bun, Node) the gauge counts none of them.
    await vi.waitFor(
      async () => {
        const again = await open(path, { token })
        expect(again.res.status).toBe(200)
        again.close()
      },
      { timeout: 15_000, interval: 200 },
    )
    if (target !== 'workerd') await expect.poll(openStreamsGauge, { timeout: 15_000, interval: 100 }).toBe(0)
  })
})

describe('GET /v1/admin/orders/events', () => {
  it('streams every order’s changes from the next one on, to admins only', async () => {
    const watcher = await orderOfNewCustomer()
    await expectProblem((await open('/v1/admin/orders/events', { token: watcher.token })).res, 403, 'forbidden')

    const all = await open('/v1/admin/orders/events', { token: adminToken })
    expect(all.res.status).toBe(200)
    await opened(all)
    expect((await watcher.pay('tok_declined')).status).toBe(202)
    await vi.waitFor(
      () => expect(statuses(all.events, watcher.orderId).map((e) => e.status)).toEqual(['payment_processing', 'payment_failed']),
      {
        timeout: 20_000,
        interval: 50,
      },
    )

    // Resuming after the first of them gives the second again, and what other orders did meanwhile.
    const first = all.events.find((e) => JSON.parse(e.data).orderId === watcher.orderId)!
    const resumed = await open('/v1/admin/orders/events', { token: adminToken, lastEventId: first.id })
    await vi.waitFor(() => expect(statuses(resumed.events, watcher.orderId).map((e) => e.status)).toEqual(['payment_failed']), {
      timeout: 10_000,
      interval: 50,
    })
    for (const e of resumed.events) expect(Number(e.id)).toBeGreaterThan(Number(first.id))
  })
})
