import { sql } from 'drizzle-orm'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DatabaseHandle, rowsOf, type Transaction } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { checkout, releaseStock } from '../../src/features/orders/service.ts'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { migratedDatabase } from '../support/databases.ts'

/*
 * Multi-line checkouts and stock releases racing over the same few products.
 * The UPDATE that takes stock joins the order's lines to products, and
 * PostgreSQL may plan that join as a scan in table order: without taking the
 * rows in id order first, two transactions lock them in different orders and
 * one dies with a deadlock (40P01). The reliability suite found it under load;
 * this reproduces it in a few seconds.
 */

let handle: DatabaseHandle & { close(): Promise<void> }
let admin: postgres.Sql
let url: string
const products: string[] = []
const users: string[] = []
const STOCK = 1_000_000

beforeAll(async () => {
  url = await migratedDatabase('checkout_race')
  handle = createPostgresDatabase({ url, poolMax: 24, timeoutMs: 5000, statementTimeoutMs: 10_000 })
  admin = postgres(url, { max: 1, onnotice: () => {} })
  for (let i = 0; i < 6; i++) {
    const id = uuidv7()
    products.push(id)
    await admin`insert into products (id, sku, name, description, price_cents, currency, stock, category)
                values (${id}, ${`RACE-${i}`}, ${`Race ${i}`}, '', 100, 'USD', ${STOCK}, 'race')`
  }
  for (let i = 0; i < 4; i++) {
    const id = uuidv7()
    users.push(id)
    await admin`insert into users (id, email, name, password_hash) values (${id}, ${`race${i}@example.test`}, 'Race', 'x')`
  }
  // Big enough that the planner is free to scan rather than probe by id.
  await admin`analyze products`
}, 60_000)

afterAll(async () => {
  await admin?.end()
  await handle?.close()
})

describe('concurrent checkouts', () => {
  it('take and give back stock over shared products without a deadlock, and every unit is accounted for', async () => {
    const errors: unknown[] = []
    const placed: string[] = []
    const until = Date.now() + 4000
    const worker = async (w: number) => {
      let n = 0
      while (Date.now() < until) {
        n++
        // Three distinct products, in an order that differs from worker to worker.
        const picks = [...products].sort(() => Math.random() - 0.5).slice(0, 3)
        try {
          const { order } = await handle.db.transaction((tx) =>
            checkout(
              tx as Transaction,
              { userId: users[w % users.length]!, items: picks.map((productId) => ({ productId, quantity: 1 + ((w + n) % 3) })) },
              { currency: 'USD', ttlSeconds: 900 },
            ),
          )
          placed.push(order.id)
          if (n % 3 === 0) {
            // Cancel-like release of an earlier order, racing the checkouts.
            const id = placed.shift()!
            await handle.db.transaction(async (tx) => {
              const cancelled = rowsOf(
                await tx.execute(sql`update orders set status = 'cancelled' where id = ${id} and status = 'pending_payment' returning id`),
              )
              if (cancelled.length > 0) await releaseStock(tx as Transaction, [id])
            })
          }
        } catch (err) {
          errors.push(err)
        }
      }
    }
    await Promise.all(Array.from({ length: 24 }, (_, w) => worker(w)))
    expect(errors.map((e) => `${(e as { code?: string }).code}: ${(e as Error).message}`)).toEqual([])

    const [row] = await admin<{ held: number; stock: number }[]>`
      select (select coalesce(sum(i.quantity), 0)::int from order_items i join orders o on o.id = i.order_id
              where o.status = 'pending_payment') as held,
             (select sum(stock)::int from products) as stock`
    expect(row!.held + row!.stock).toBe(products.length * STOCK)
  }, 30_000)

  it('refuses a sold-out product at once, without queueing behind a transaction that holds its row', async () => {
    const soldOut = uuidv7()
    await admin`insert into products (id, sku, name, description, price_cents, currency, stock, category)
                values (${soldOut}, 'RACE-SOLD-OUT', 'Sold out', '', 100, 'USD', 0, 'race')`
    const holder = postgres(url, { max: 1, onnotice: () => {} })
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    let locked!: () => void
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve
    })
    const holding = holder.begin(async (tx) => {
      await tx`select id from products where id = ${soldOut} for update`
      locked()
      await held
    })
    try {
      await isLocked
      const started = Date.now()
      const outcome = await handle.db
        .transaction((tx) =>
          checkout(
            tx as Transaction,
            { userId: users[0]!, items: [{ productId: soldOut, quantity: 1 }] },
            { currency: 'USD', ttlSeconds: 900 },
          ),
        )
        .catch((err: unknown) => err)
      expect((outcome as { code?: string }).code).toBe('insufficient_stock')
      // Before, every checkout locked the row whatever its stock, and waited here for the holder to finish.
      expect(Date.now() - started).toBeLessThan(2000)
    } finally {
      release()
      await holding
      await holder.end()
    }
  })

  it('runs on generic plans: a statement is planned once per connection, not on every checkout', async () => {
    // One connection, so that its prepared statements are the ones pg_prepared_statements shows.
    const single = createPostgresDatabase({ url, poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 10_000 })
    try {
      for (let n = 0; n < 8; n++)
        await single.db.transaction((tx) =>
          checkout(
            tx as Transaction,
            {
              userId: users[0]!,
              items: [
                { productId: products[n % 3]!, quantity: 1 },
                { productId: products[3]!, quantity: 2 },
              ],
            },
            { currency: 'USD', ttlSeconds: 900 },
          ),
        )
      const plans = rowsOf<{ statement: string; generic_plans: string; custom_plans: string }>(
        await single.db.execute(sql`select statement, generic_plans, custom_plans from pg_prepared_statements`),
      )
      const of = (text: string) => plans.find((p) => p.statement.includes(text))
      for (const text of ['for update', 'insert into orders']) {
        expect(of(text), text).toMatchObject({ custom_plans: '0', generic_plans: '8' })
      }
    } finally {
      await single.close()
    }
  })
})
