import { eq, sql } from 'drizzle-orm'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { rowsOf, type Transaction } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { jobs, orderItems, orders, products, users } from '../../src/db/schema.ts'
import { ensureAdmin } from '../../src/features/accounts/service.ts'
import { expireOrders } from '../../src/features/orders/service.ts'
import { MINUTELY, runSchedule } from '../../src/features/schedule/index.ts'
import { drainDueJobs } from '../../src/infra/jobs/jobs.ts'
import { createHttpMailer } from '../../src/infra/mailer.ts'
import { startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { startEmailApi } from '../support/email-api.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/*
 * Background jobs with the embedded runner on a real PostgreSQL: shared work
 * across processes, retries, dead jobs, the mailer's breaker, and the
 * schedule's once-per-slot guarantee.
 */

const ADMIN = { email: 'jobs-admin@example.test', password: 'jobs admin password' }
const json = (body: unknown, token?: string, key?: string) => ({
  method: 'POST',
  headers: {
    'Content-Type': 'application/json',
    ...(token ? { Authorization: `Bearer ${token}` } : {}),
    ...(key ? { 'Idempotency-Key': key } : {}),
  },
  body: JSON.stringify(body),
})

describe('two processes with embedded runners on one PostgreSQL', () => {
  it('share the work: every payment captured once, one email per paid order, no job left behind', async () => {
    const url = await migratedDatabase('jobs_two')
    const env = {
      NODE_ENV: 'production',
      DATABASE_URL: url,
      JWT_SECRET: 'jobs-two-secret-0123456789abcdef0123',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      PAYMENT_PROVIDER: 'simulated',
      MAILER: 'recording',
      JOB_BACKOFF_BASE_MS: '100',
      JOB_POLL_MS: '50',
      RATE_LIMIT_AUTH: '1000/60',
      LOG_LEVEL: 'warn',
    }
    const [a, b] = await Promise.all([startAppServer('node', env), startAppServer('bun', env)])
    try {
      const post = async (url: string, body: unknown, token?: string, key?: string) => {
        const res = await fetch(url, json(body, token, key))
        return { status: res.status, body: (await res.json()) as Record<string, unknown> }
      }
      const admin = (await post(`${a.url}/v1/auth/login`, ADMIN)).body.accessToken as string
      const product = (
        await post(
          `${a.url}/v1/products`,
          { sku: `JOBS-${Date.now()}`, name: 'Shared work', priceCents: 700, stock: 1000, category: 'jobs' },
          admin,
        )
      ).body.id as string
      const buyer = (
        await post(`${b.url}/v1/auth/signup`, { email: `buyer-${Date.now()}@example.test`, password: 'buying lots of things', name: 'B' })
      ).body.accessToken as string
      const orderIds: string[] = []
      for (let i = 0; i < 30; i++) {
        const server = i % 2 ? a : b
        const order = await post(`${server.url}/v1/orders`, { items: [{ productId: product, quantity: 1 }] }, buyer, `o-${i}`)
        expect(order.status).toBe(201)
        orderIds.push(order.body.id as string)
        const pay = await post(
          `${server.url}/v1/orders/${order.body.id}/pay`,
          { paymentToken: i % 3 === 0 ? 'tok_flaky' : 'tok_ok' },
          buyer,
          `p-${i}`,
        )
        expect(pay.status).toBe(202)
      }
      const db = postgres(url, { max: 1 })
      try {
        const paid = async () =>
          ((await db`select count(*)::int as paid from orders where status = 'paid'`) as unknown as [{ paid: number }])[0].paid
        await expect.poll(paid, { timeout: 30_000, interval: 200 }).toBe(30)
        await new Promise((r) => setTimeout(r, 500))
        const charges =
          await db`select count(*)::int as n, count(distinct idempotency_key)::int as keys from simulated_charges where status = 'captured'`
        expect(charges[0]).toEqual({ n: 30, keys: 30 })
        const mails = await db`select order_id, count(*)::int as n from emails group by order_id`
        expect(mails).toHaveLength(30)
        expect(mails.every((m) => m.n === 1)).toBe(true)
        const left = await db`select status, count(*)::int as n from jobs where name <> 'order.expire' group by status`
        expect(left).toEqual([{ status: 'succeeded', n: 60 }])
        const okAttempts = await db`select attempts from jobs j where name = 'payment.capture' and attempts <> 1 and not exists (
          select 1 from simulated_charges c where c.idempotency_key = 'capture:' || j.id and c.token = 'tok_flaky')`
        expect(okAttempts).toEqual([])
      } finally {
        await db.end()
      }
    } finally {
      await Promise.all([a.stop(), b.stop()])
    }
  })
})

describe('jobs in one process', () => {
  let t: TestApp
  let mail: Awaited<ReturnType<typeof startEmailApi>>
  let url: string
  let admin: string
  let buyer: string
  let product: string

  beforeAll(async () => {
    url = await migratedDatabase('jobs_one')
    mail = await startEmailApi({ apiKey: 'jobs-mail-key' })
    const database = createPostgresDatabase({ url, poolMax: 5, timeoutMs: 2000, statementTimeoutMs: 5000 })
    t = await createTestApp({
      database,
      env: {
        EMAIL_API_URL: mail.url,
        EMAIL_API_KEY: 'jobs-mail-key',
        EMAIL_FROM: 'shop@example.test',
        EMAIL_TIMEOUT_MS: '500',
        EMAIL_CIRCUIT_OPEN_MS: '300',
        JOB_BACKOFF_BASE_MS: '1',
        RATE_LIMIT_AUTH: '1000/60',
      },
    })
    await ensureAdmin(t.services.accounts(t.services.scope()), ADMIN)
    admin = ((await (await t.app.request('/v1/auth/login', json(ADMIN))).json()) as { accessToken: string }).accessToken
    buyer = (
      (await (
        await t.app.request('/v1/auth/signup', json({ email: 'one@example.test', password: 'one buyer password', name: 'One' }))
      ).json()) as {
        accessToken: string
      }
    ).accessToken
    product = (
      (await (
        await t.app.request('/v1/products', json({ sku: 'ONE-1', name: 'One', priceCents: 100, stock: 100, category: 'jobs' }, admin))
      ).json()) as {
        id: string
      }
    ).id
  })
  afterAll(async () => {
    await t?.close()
    await mail?.close()
  })

  const runtime = () => t.services.jobs(t.services.scope())
  async function paidOrder(key: string) {
    const order = (await (
      await t.app.request('/v1/orders', json({ items: [{ productId: product, quantity: 1 }] }, buyer, `o-${key}`))
    ).json()) as { id: string }
    await t.app.request(`/v1/orders/${order.id}/pay`, json({ paymentToken: 'tok_ok' }, buyer, `p-${key}`))
    return order.id
  }
  async function drain(rounds = 40) {
    for (let i = 0; i < rounds; i++) {
      await drainDueJobs(runtime(), 100)
      await new Promise((r) => setTimeout(r, 25))
    }
  }

  it('an email the provider refuses twice is retried and sent once, with the job’s idempotency key', async () => {
    mail.fail(2)
    const before = mail.sent.length
    const orderId = await paidOrder('retry')
    await drain()
    const sent = mail.sent.slice(before)
    expect(sent).toHaveLength(1)
    expect(sent[0]!.idempotencyKey).toBe(`email.order_paid:${orderId}`)
    const [job] = await t.database.db
      .select()
      .from(jobs)
      .where(sql`${jobs.payload}->>'orderId' = ${orderId} and ${jobs.name} = 'email.order_paid'`)
    expect(job).toMatchObject({ status: 'succeeded', attempts: 3 })
  })

  it('a job whose attempts run out is dead; an admin queues it again and it runs', async () => {
    mail.fail(1000)
    const orderId = await paidOrder('dead')
    await drain(80)
    const [job] = await t.database.db
      .select()
      .from(jobs)
      .where(sql`${jobs.payload}->>'orderId' = ${orderId} and ${jobs.name} = 'email.order_paid'`)
    expect(job).toMatchObject({ status: 'dead', attempts: 8 })
    expect(job!.lastError).toMatch(/503|failing/)
    const dead = (await (await t.app.request('/v1/admin/jobs?status=dead', { headers: { Authorization: `Bearer ${admin}` } })).json()) as {
      items: { id: string }[]
    }
    expect(dead.items.map((j) => j.id)).toContain(job!.id)

    mail.fail(0)
    // After so many failures the breaker is open: let it half-open, so the retried job's call goes through.
    await new Promise((r) => setTimeout(r, 400))
    const retry = await t.app.request(`/v1/admin/jobs/${job!.id}/retry`, { method: 'POST', headers: { Authorization: `Bearer ${admin}` } })
    expect(retry.status).toBe(202)
    expect(((await retry.json()) as { status: string }).status).toBe('pending')
    const again = await t.app.request(`/v1/admin/jobs/${job!.id}/retry`, { method: 'POST', headers: { Authorization: `Bearer ${admin}` } })
    expect(again.status).toBe(409)
    expect(
      (await t.app.request('/v1/admin/jobs/not-a-job/retry', { method: 'POST', headers: { Authorization: `Bearer ${admin}` } })).status,
    ).toBe(404)
    // The queued job runs within this test, so that none of its calls reaches the provider during the next.
    await vi.waitFor(
      async () => {
        await drainDueJobs(runtime(), 100)
        const [queued] = await t.database.db.select().from(jobs).where(eq(jobs.id, job!.id))
        expect(queued).toMatchObject({ status: 'succeeded' })
      },
      { timeout: 5000, interval: 50 },
    )
  })

  it('an email API that never answers, or sends its headers and then nothing, costs one EMAIL_TIMEOUT_MS and no open connection', async () => {
    // A mailer of this test's own, configured as the app's: its circuit breaker starts closed, whatever earlier tests left the app's in.
    const mailer = createHttpMailer(t.config.mailer as Extract<typeof t.config.mailer, { kind: 'http' }>)
    for (const what of ['all', 'body'] as const) {
      mail.down(what)
      const calls = mail.calls()
      const email = { to: 'one@example.test', subject: 'S', template: 't', text: 'x', idempotencyKey: `silent-${what}-${Date.now()}` }
      const started = performance.now()
      await expect(t.database.db.transaction((tx) => mailer.send(email, { tx: tx as Transaction }))).rejects.toThrow(/timed? ?out|abort/i)
      const elapsed = performance.now() - started
      expect(mail.calls(), what).toBe(calls + 1)
      expect(elapsed, what).toBeGreaterThanOrEqual(450)
      expect(elapsed, what).toBeLessThan(500 + 1500)
      // The mailer gave up on the call and closed its connection: nothing is left waiting on the provider.
      await expect.poll(() => mail.unanswered(), { timeout: 2000 }).toBe(0)
      mail.up()
    }
  })

  it('the mailer’s circuit breaker stops calling a dead provider, so failures are quick', async () => {
    mail.fail(1000)
    for (let i = 0; i < 3; i++) await paidOrder(`breaker-${i}`)
    const callsBefore = mail.calls()
    await drain(40)
    // After the breaker opened, attempts fail without a call: far fewer calls than attempts.
    const [{ attempts }] = rowsOf<{ attempts: number }>(
      await t.database.db.execute(
        sql`select coalesce(sum(attempts), 0)::int as attempts from jobs where name = 'email.order_paid' and status <> 'succeeded'`,
      ),
    ) as [{ attempts: number }]
    expect(mail.calls() - callsBefore).toBeLessThan(attempts)
    mail.fail(0)
  })
})

describe('expiry and schedules under concurrency', () => {
  let url: string
  beforeAll(async () => {
    url = await migratedDatabase('jobs_expiry')
  })

  async function seedExpiredOrders(db: ReturnType<typeof createPostgresDatabase>['db'], n: number) {
    const userId = crypto.randomUUID()
    await db.insert(users).values({ id: userId, email: `exp-${Date.now()}@example.test`, name: 'E', passwordHash: 'x' })
    const productId = crypto.randomUUID()
    await db
      .insert(products)
      .values({ id: productId, sku: `EXP-${Date.now()}`, name: 'E', priceCents: 1, currency: 'USD', stock: 0, category: 'e' })
    const past = new Date(Date.now() - 60_000)
    for (let i = 0; i < n; i++) {
      const id = crypto.randomUUID()
      await db
        .insert(orders)
        .values({ id, userId, status: i % 2 ? 'pending_payment' : 'payment_failed', totalCents: 2, currency: 'USD', expiresAt: past })
      await db.insert(orderItems).values({ orderId: id, productId, sku: 'E', name: 'E', unitPriceCents: 1, quantity: 2 })
    }
    return productId
  }

  it('two expiry runs at once release every order’s stock exactly once', async () => {
    const a = createPostgresDatabase({ url, poolMax: 2, timeoutMs: 2000, statementTimeoutMs: 5000 })
    const b = createPostgresDatabase({ url, poolMax: 2, timeoutMs: 2000, statementTimeoutMs: 5000 })
    const productId = await seedExpiredOrders(a.db, 40)
    const runs = await Promise.all([a, b, a, b].map((h) => h.db.transaction((tx) => expireOrders(tx as never, { limit: 15 }))))
    const extra = await a.db.transaction((tx) => expireOrders(tx as never, { limit: 100 }))
    const expired = [...runs.flatMap((r) => r.expired), ...extra.expired]
    expect(new Set(expired).size).toBe(expired.length)
    expect(expired.length).toBe(40)
    const [p] = await a.db.select({ stock: products.stock }).from(products).where(eq(products.id, productId))
    expect(p!.stock).toBe(80)
    await Promise.all([a.close(), b.close()])
  })

  it('a schedule tick runs once per slot however many instances tick', async () => {
    const handles = [0, 1, 2, 3].map(() => createPostgresDatabase({ url, poolMax: 2, timeoutMs: 2000, statementTimeoutMs: 5000 }))
    const t = await createTestApp({ database: handles[0]! })
    const now = new Date(Date.UTC(2030, 0, 1, 12, 0, 30))
    const reports = await Promise.all(
      handles.map((h) =>
        runSchedule(MINUTELY, now, t.services.schedule({ db: h.db, database: h, read: (work) => work(h.db), waitUntil: () => {} })),
      ),
    )
    expect(reports.filter((r) => r.ran)).toHaveLength(1)
    const later = await runSchedule(
      MINUTELY,
      new Date(now.getTime() + 20_000),
      t.services.schedule({ db: handles[1]!.db, database: handles[1]!, read: (work) => work(handles[1]!.db), waitUntil: () => {} }),
    )
    expect(later).toEqual({ ran: false, reason: 'already ran' })
    const next = await runSchedule(
      MINUTELY,
      new Date(now.getTime() + 60_000),
      t.services.schedule({ db: handles[2]!.db, database: handles[2]!, read: (work) => work(handles[2]!.db), waitUntil: () => {} }),
    )
    expect(next.ran).toBe(true)
    await t.close()
    await Promise.all(handles.slice(1).map((h) => h.close()))
  })
})
