import postgres from 'postgres'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { client, loginAdmin, openEventStream, type SessionBody, signupCustomer } from '../contract/helpers.ts'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'

/*
 * Order events across instances: a Bun and a Node process on one PostgreSQL.
 * A status change made through one reaches a stream held by the other within
 * 1 s (LISTEN/NOTIFY), a transaction that rolls back announces nothing, and a
 * stream misses nothing when its process's LISTEN connection is cut.
 */

const SECRET = 'order-events-secret-0123456789abcdef01'
const ADMIN = { email: 'admin@order-events.test', password: 'order-events-admin-password' }
let sql: postgres.Sql
let bun: AppServer
let node: AppServer
let settings: Record<string, string>
const streams: { close(): void }[] = []

beforeAll(async () => {
  const url = await migratedDatabase('order_events')
  sql = postgres(url, { max: 1, onnotice: () => {} })
  settings = {
    NODE_ENV: 'production',
    DATABASE_URL: url,
    JWT_SECRET: SECRET,
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
    JOB_POLL_MS: '50',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
  }
  ;[bun, node] = await Promise.all([startAppServer('bun', settings), startAppServer('node', settings)])
}, 60_000)

afterEach(() => {
  for (const s of streams.splice(0)) s.close()
})

afterAll(async () => {
  await Promise.all([bun?.stop(), node?.stop()])
  await sql?.end()
})

interface Event {
  orderId: string
  status: string
  previousStatus: string
  at: string
  /** When this test received it (ms since the epoch). */
  receivedAt: number
}

/** A customer (signed up on Bun) and an order of theirs in pending_payment. */
async function customerWithOrder(): Promise<{ session: SessionBody; orderId: string }> {
  const session = await signupCustomer(client(bun.url), 'cross')
  const product = uuidv7()
  await sql`insert into products (id, sku, name, description, price_cents, currency, stock, category)
            values (${product}, ${`EVT-${product}`}, 'Events', '', 500, 'USD', 10, 'events')`
  const res = await client(bun.url).post(
    '/v1/orders',
    { items: [{ productId: product, quantity: 1 }] },
    { token: session.accessToken, headers: { 'Idempotency-Key': uuidv7() } },
  )
  expect(res.status).toBe(201)
  return { session, orderId: ((await res.json()) as { id: string }).id }
}

/** Follows an order on `server`, noting when each event arrives; resolves once the stream is open. */
async function follow(server: AppServer, orderId: string, token: string) {
  const stream = await openEventStream(server.url, `/v1/orders/${orderId}/events`, { token })
  streams.push(stream)
  expect(stream.res.status).toBe(200)
  await vi.waitFor(() => expect(stream.retry()).toBeDefined(), { timeout: 10_000, interval: 10 })
  const received: Event[] = []
  const poll = setInterval(() => {
    for (const e of stream.events.slice(received.length)) received.push({ ...JSON.parse(e.data), receivedAt: Date.now() })
  }, 5)
  streams.push({ close: () => clearInterval(poll) })
  return received
}

describe('order events across instances (LISTEN/NOTIFY)', () => {
  it('a change made through Bun reaches a stream held by Node within 1 s, and the other way round', async () => {
    const { session, orderId } = await customerWithOrder()
    const onNode = await follow(node, orderId, session.accessToken)
    const paid = await client(bun.url).post(
      `/v1/orders/${orderId}/pay`,
      { paymentToken: 'tok_ok' },
      { token: session.accessToken, headers: { 'Idempotency-Key': uuidv7() } },
    )
    expect(paid.status).toBe(202)
    await vi.waitFor(() => expect(onNode.map((e) => e.status)).toEqual(['payment_processing', 'paid']), { timeout: 10_000, interval: 20 })
    // `at` is the transition's time, taken in its transaction just before it commits.
    for (const e of onNode) expect(e.receivedAt - Date.parse(e.at), e.status).toBeLessThan(1000)

    const other = await customerWithOrder()
    const onBun = await follow(bun, other.orderId, other.session.accessToken)
    const cancelled = await client(node.url).post(`/v1/orders/${other.orderId}/cancel`, undefined, { token: other.session.accessToken })
    const answeredAt = Date.now()
    expect(cancelled.status).toBe(200)
    await vi.waitFor(() => expect(onBun.map((e) => e.status)).toEqual(['cancelled']), { timeout: 10_000, interval: 20 })
    expect(onBun[0]!.receivedAt - answeredAt).toBeLessThan(1000)
  })

  it('a transition rolled back announces nothing; the next committed one arrives alone', async () => {
    const { session, orderId } = await customerWithOrder()
    const onNode = await follow(node, orderId, session.accessToken)
    await expect(
      sql.begin(async (tx) => {
        await tx`update orders set status = 'paid', updated_at = now() where id = ${orderId}`
        throw new Error('roll back')
      }),
    ).rejects.toThrow('roll back')
    const cancelled = await client(bun.url).post(`/v1/orders/${orderId}/cancel`, undefined, { token: session.accessToken })
    expect(cancelled.status).toBe(200)
    await vi.waitFor(() => expect(onNode.map((e) => e.status)).toEqual(['cancelled']), { timeout: 10_000, interval: 20 })
    expect(onNode[0]).toMatchObject({ orderId, previousStatus: 'pending_payment' })
    const recorded = await sql<{ status: string }[]>`select status from order_events where order_id = ${orderId} order by id`
    expect(recorded.map((r) => r.status)).toEqual(['cancelled'])
  })

  it('a stream misses nothing when its process’s LISTEN connection is cut: the listen comes back and the record is read again', async () => {
    const { session, orderId } = await customerWithOrder()
    // A stream on each process, so that each holds its LISTEN connection.
    const [onNode, onBun] = [await follow(node, orderId, session.accessToken), await follow(bun, orderId, session.accessToken)]
    const listeners = () => sql<{ pid: number }[]>`
      select pid from pg_stat_activity where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`
    await vi.waitFor(async () => expect((await listeners()).length).toBe(2), { timeout: 10_000, interval: 50 })
    // Cut both, and change the order while they are down.
    await sql`select pg_terminate_backend(pid) from pg_stat_activity
              where datname = current_database() and query ilike 'listen%' and pid <> pg_backend_pid()`
    await sql`update orders set status = 'cancelled', updated_at = now() where id = ${orderId}`
    for (const received of [onNode, onBun])
      await vi.waitFor(() => expect(received.map((e) => e.status)).toEqual(['cancelled']), { timeout: 10_000, interval: 20 })
    await vi.waitFor(async () => expect((await listeners()).length).toBe(2), { timeout: 10_000, interval: 50 })
  })

  it('graceful shutdown ends the open streams at once instead of waiting for their clients', async () => {
    const { session, orderId } = await customerWithOrder()
    const leaving = await startAppServer('node', { ...settings, SHUTDOWN_DRAIN_MS: '5000' })
    const held: Awaited<ReturnType<typeof openEventStream>>[] = []
    for (let i = 0; i < 2; i++) {
      const s = await openEventStream(leaving.url, `/v1/orders/${orderId}/events`, { token: session.accessToken })
      streams.push(s)
      await vi.waitFor(() => expect(s.retry()).toBeDefined(), { timeout: 10_000, interval: 10 })
      held.push(s)
    }
    const started = Date.now()
    expect(await leaving.stop()).toBe(0)
    // The listener would otherwise wait 10 s for the streams, as for any request in flight.
    expect(Date.now() - started).toBeLessThan(5000)
    await vi.waitFor(() => expect(held.map((s) => s.ended())).toEqual([true, true]), { timeout: 2000, interval: 10 })
  })
})

describe('the stream of every order (admin)', () => {
  it('sends a change whose transaction commits after one with a higher id, when it commits', async () => {
    const adminToken = await loginAdmin(bun.url, ADMIN)
    const first = await customerWithOrder()
    const second = await customerWithOrder()
    const all = await openEventStream(node.url, '/v1/admin/orders/events', { token: adminToken })
    streams.push(all)
    await vi.waitFor(() => expect(all.retry()).toBeDefined(), { timeout: 10_000, interval: 10 })
    const seen = () =>
      all.events.map((e) => {
        const { orderId, status } = JSON.parse(e.data) as { orderId: string; status: string }
        return { id: Number(e.id), orderId, status }
      })

    // The first order's change takes its id, and its transaction stays open while the second order's commits.
    let commit!: () => void
    const held = new Promise<void>((resolve) => (commit = resolve))
    let firstId = 0
    const slow = sql.begin(async (tx) => {
      await tx`update orders set status = 'cancelled', updated_at = now() where id = ${first.orderId}`
      const [row] = await tx<{ id: string }[]>`select id from order_events where order_id = ${first.orderId}`
      firstId = Number(row!.id)
      await held
    })
    await vi.waitFor(() => expect(firstId).toBeGreaterThan(0))
    const cancelled = await client(bun.url).post(`/v1/orders/${second.orderId}/cancel`, undefined, { token: second.session.accessToken })
    expect(cancelled.status).toBe(200)
    await vi.waitFor(() => expect(seen().map((e) => e.orderId)).toContain(second.orderId), { timeout: 10_000, interval: 20 })
    expect(seen().find((e) => e.orderId === second.orderId)!.id).toBeGreaterThan(firstId)

    commit()
    await slow
    await vi.waitFor(
      () =>
        expect(seen().filter((e) => e.orderId === first.orderId)).toEqual([{ id: firstId, orderId: first.orderId, status: 'cancelled' }]),
      {
        timeout: 10_000,
        interval: 20,
      },
    )
  })
})
