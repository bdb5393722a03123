import postgres from 'postgres'
import { describe, expect, it } from 'vitest'
import { adminToken, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'

/*
 * The schedule through the Workers `scheduled` handler, in workerd
 * (`wrangler dev`, cron fired through /cdn-cgi/handler/scheduled). Without
 * QStash, the cron tick is also what runs delayed jobs on Workers.
 */

const ADMIN = { email: 'cron-admin@example.test', password: 'cron admin password' }

describe('Workers cron trigger', () => {
  it('expires unpaid orders and releases their stock once, however often the cron fires', async () => {
    const url = await migratedDatabase('workers_cron')
    const server = await startAppServer('workerd', {
      DATABASE_URL: url,
      JWT_SECRET: 'workers-cron-secret-0123456789abcdef0',
      PAYMENT_PROVIDER: 'simulated',
      MAILER: 'recording',
      ORDER_TTL_SECONDS: '5',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      RATE_LIMIT_AUTH: '1000/60',
    })
    const db = postgres(url, { max: 1 })
    try {
      const post = async (path: string, body: unknown, token?: string, key?: string) =>
        (await (
          await fetch(`${server.url}${path}`, {
            method: 'POST',
            headers: {
              'Content-Type': 'application/json',
              ...(token ? { Authorization: `Bearer ${token}` } : {}),
              ...(key ? { 'Idempotency-Key': key } : {}),
            },
            body: JSON.stringify(body),
          })
        ).json()) as Record<string, unknown>
      await fetch(`${server.url}/healthz`)
      const admin = await adminToken(server.url, ADMIN)
      const product = (
        await post('/v1/products', { sku: `CRON-${Date.now()}`, name: 'Cron', priceCents: 100, stock: 4, category: 'cron' }, admin)
      ).id as string
      const buyer = (await post('/v1/auth/signup', { email: `cron-${Date.now()}@example.test`, password: 'waiting for cron', name: 'C' }))
        .accessToken as string
      const created = await post('/v1/orders', { items: [{ productId: product, quantity: 3 }] }, buyer, 'cron-order')
      const order = created.id as string
      expect(order, JSON.stringify(created)).toBeDefined()
      await new Promise((r) => setTimeout(r, 6000))
      expect((await db`select status from orders where id = ${order}`)[0]!.status).toBe('pending_payment')

      const fires = await Promise.all(
        [0, 1, 2].map(() => fetch(`${server.url}/cdn-cgi/handler/scheduled?cron=${encodeURIComponent('* * * * *')}`)),
      )
      expect(fires.every((r) => r.status === 200)).toBe(true)
      expect((await db`select status from orders where id = ${order}`)[0]!.status).toBe('expired')
      expect((await db`select stock from products where id = ${product}`)[0]!.stock).toBe(4)
      const runs = await db`select count(*)::int as n from schedule_runs where schedule = '* * * * *'`
      expect(runs[0]!.n).toBe(1)
      const job = await db`select status from jobs where name = 'order.expire' and payload->>'orderId' = ${order}`
      expect(job[0]!.status).toBe('succeeded')
    } finally {
      await db.end()
      await server.stop()
    }
  })
})
