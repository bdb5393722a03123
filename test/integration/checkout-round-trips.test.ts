import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { migratedDatabase } from '../support/databases.ts'
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/*
 * What one checkout (POST /v1/orders) costs PostgreSQL, through the whole
 * app: the token check, the idempotency middleware and the order's
 * transaction. The TCP proxy counts the times the client speaks after its
 * server (round trips); nothing else shares the pool's one connection.
 */

let t: TestApp
let proxy: TcpProxy
let admin: postgres.Sql
const products: string[] = []

beforeAll(async () => {
  const url = new URL(await migratedDatabase('checkout_trips'))
  admin = postgres(url.toString(), { max: 1, onnotice: () => {} })
  for (let i = 0; i < 3; i++) {
    const id = uuidv7()
    products.push(id)
    await admin`insert into products (id, sku, name, description, price_cents, currency, stock, category)
                values (${id}, ${`TRIP-${i}`}, ${`Trip ${i}`}, '', 100, 'USD', 1000, 'trips')`
  }
  proxy = await startTcpProxy(Number(url.port), url.hostname)
  url.host = `127.0.0.1:${proxy.port}`
  const database = createPostgresDatabase({ url: url.toString(), poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 10_000 })
  t = await createTestApp({ database, env: { JWT_SECRET: 'checkout-trips-secret-0123456789abcdef' } })
}, 60_000)

afterAll(async () => {
  await t?.close()
  await proxy?.close()
  await admin?.end()
})

describe('a checkout, in round trips to PostgreSQL', () => {
  it('costs three, stored or replayed', async () => {
    const signup = await t.app.request('/v1/auth/signup', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: `trips-${uuidv7()}@example.test`, password: 'round trips password', name: 'Trips' }),
    })
    expect(signup.status).toBe(201)
    const { accessToken } = (await signup.json()) as { accessToken: string }
    const order = (key: string, productId: string) =>
      t.app.request('/v1/orders', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${accessToken}`, 'idempotency-key': key },
        body: JSON.stringify({ items: [{ productId, quantity: 1 }] }),
      })
    // The connection is open, the token verified once and the statements prepared.
    expect((await order('warm', products[0]!)).status).toBe(201)
    const trips: Record<string, [number, number]> = {}
    for (const [name, key, productId] of [
      ['placed', 'trip-1', products[1]!],
      ['another', 'trip-2', products[2]!],
      ['replayed', 'trip-1', products[1]!],
    ] as const) {
      const before = proxy.roundTrips
      const res = await order(key, productId)
      trips[name] = [res.status, proxy.roundTrips - before]
    }
    expect(trips).toEqual({ placed: [201, 3], another: [201, 3], replayed: [201, 3] })
  })
})
