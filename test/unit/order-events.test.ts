import { sql } from 'drizzle-orm'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { EVENT_BATCH } from '../../src/features/orders/events.ts'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/*
 * Order event streams in process, on the embedded PGlite (its own NOTIFY):
 * a stream far behind, the per-instance bound, and the end of every stream
 * at shutdown. The contract suite covers the rest over HTTP on every target.
 */

let t: TestApp | undefined
afterEach(async () => {
  await t?.close()
  t = undefined
})

/** A signed-up customer and an order of theirs, made with SQL. */
async function customerWithOrder(app: TestApp) {
  const res = await app.app.request('/v1/auth/signup', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email: `events-${uuidv7()}@example.test`, password: 'a perfectly fine password', name: 'Events' }),
  })
  expect(res.status).toBe(201)
  const session = (await res.json()) as { user: { id: string }; accessToken: string }
  const orderId = uuidv7()
  await app.database.db.execute(sql`insert into orders (id, user_id, status, total_cents, currency, expires_at)
    values (${orderId}, ${session.user.id}, 'pending_payment', 100, 'USD', now() + interval '1 hour')`)
  return { token: session.accessToken, orderId }
}

/** Reads a stream as text as it comes; `text()` is all of it so far, `done()` true once the server ended it. */
function reader(res: Response) {
  let text = ''
  let done = false
  const r = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  ;(async () => {
    for (;;) {
      const chunk = await r.read()
      if (chunk.done) break
      text += chunk.value
    }
    done = true
  })().catch(() => {
    done = true
  })
  return { text: () => text, done: () => done, cancel: () => r.cancel().catch(() => {}) }
}

const stream = (app: TestApp, orderId: string, token: string, lastEventId?: string) =>
  app.app.request(`/v1/orders/${orderId}/events`, {
    headers: { Authorization: `Bearer ${token}`, ...(lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId }) },
  })

describe('order event streams', () => {
  it(`a client far behind gets every event in order, ${EVENT_BATCH} at a time`, async () => {
    t = await createTestApp()
    const { token, orderId } = await customerWithOrder(t)
    const changes = EVENT_BATCH + 50
    for (let i = 0; i < changes; i++) {
      const status = i % 2 === 0 ? 'payment_processing' : 'payment_failed'
      await t.database.db.execute(sql`update orders set status = ${status}, updated_at = now() where id = ${orderId}`)
    }
    const res = await stream(t, orderId, token)
    expect(res.status).toBe(200)
    const body = reader(res)
    const ids = () => [...body.text().matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))
    await vi.waitFor(() => expect(ids()).toHaveLength(changes), { timeout: 10_000, interval: 20 })
    expect(ids()).toEqual([...ids()].sort((a, b) => a - b))
    expect(new Set(ids()).size).toBe(changes)
    // Resuming from the middle gives exactly the rest.
    const resumed = reader(await stream(t, orderId, token, String(ids()[7])))
    await vi.waitFor(() => expect([...resumed.text().matchAll(/^id: /gm)]).toHaveLength(changes - 8), {
      timeout: 10_000,
      interval: 20,
    })
    body.cancel()
    resumed.cancel()
  })

  it('refuses a stream past SSE_MAX_STREAMS for the instance, whoever asks', async () => {
    t = await createTestApp({ env: { SSE_MAX_STREAMS: '1' } })
    const a = await customerWithOrder(t)
    const b = await customerWithOrder(t)
    const first = await stream(t, a.orderId, a.token)
    expect(first.status).toBe(200)
    const held = reader(first)
    await vi.waitFor(() => expect(held.text()).toContain('retry: 1000'))
    const refused = await stream(t, b.orderId, b.token)
    expect(refused.status).toBe(429)
    expect(await refused.json()).toMatchObject({ code: 'too_many_streams', detail: expect.stringMatching(/instance/) })
    expect(refused.headers.get('retry-after')).toBe('5')
    held.cancel()
    await vi.waitFor(() => expect(t!.services.streams.open).toBe(0))
  })

  it('closing the gate (shutdown) ends every open stream, and one opened after ends at once', async () => {
    t = await createTestApp({ env: { SSE_HEARTBEAT_MS: '50000' } })
    const { token, orderId } = await customerWithOrder(t)
    const open = reader(await stream(t, orderId, token))
    await vi.waitFor(() => expect(t!.services.streams.open).toBe(1))
    t.services.streams.close()
    await vi.waitFor(() => expect(open.done()).toBe(true))
    expect(t.services.streams.open).toBe(0)
    const late = reader(await stream(t, orderId, token))
    await vi.waitFor(() => expect(late.done()).toBe(true))
    expect(late.text()).toBe('retry: 1000\n\n')
  })
})
