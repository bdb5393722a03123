import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { ordersPage } from '../../src/features/orders/service.ts'
import { migratedDatabase } from '../support/databases.ts'

/*
 * The plans PostgreSQL picks for the orders list when one customer owns most
 * of the table and everyone else's orders are newer: a page must read about
 * `limit` rows through the customer's index, not walk the primary key past
 * every newer order, and not sort the customer's whole history.
 */

const MANY = '00000000-0000-7000-8000-00000000000a'
const OTHER = '00000000-0000-7000-8000-00000000000b'
const FEW = '00000000-0000-7000-8000-00000000000c'
const OLD = 30_000
const NEWER = 10_000

let sql: postgres.Sql
let handle: ReturnType<typeof createPostgresDatabase>

type PlanNode = { 'Node Type': string; 'Index Name'?: string; 'Actual Rows': number; 'Rows Removed by Filter'?: number; Plans?: PlanNode[] }
const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)]

async function plan(query: { toSQL(): { sql: string; params: unknown[] } }) {
  const { sql: text, params } = query.toSQL()
  const [row] = await sql.unsafe(`explain (analyze, format json) ${text}`, params as never[])
  const all = nodes((row!['QUERY PLAN'] as { Plan: PlanNode }[])[0]!.Plan)
  return {
    indexes: [...new Set(all.flatMap((n) => (n['Index Name'] ? [n['Index Name']] : [])))],
    removedByFilter: all.reduce((s, n) => s + (n['Rows Removed by Filter'] ?? 0), 0),
    sorted: all.some((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort'),
  }
}

beforeAll(async () => {
  const url = await migratedDatabase('list_plans')
  sql = postgres(url, { max: 1, onnotice: () => {} })
  for (const [id, tag] of [
    [MANY, 'many'],
    [OTHER, 'other'],
    [FEW, 'few'],
  ] as const)
    await sql`insert into users (id, email, password_hash, name) values (${id}, ${`${tag}@plans.test`}, 'x', ${tag})`
  // Time-ordered ids and creation times: the big customer's orders first, then a few, then everyone else's.
  const add = (user: string, n: number, fromMs: number) => sql`
    insert into orders (id, user_id, status, total_cents, currency, created_at, updated_at, expires_at)
    select (lpad(to_hex(${fromMs}::bigint + g), 12, '0') || '7' || substr(md5(g::text || ${user}), 1, 19))::uuid, ${user}::uuid,
           'fulfilled', 100, 'USD', to_timestamp((${fromMs}::bigint + g) / 1000.0), now(), now()
    from generate_series(1, ${n}::int) g`
  const start = Date.now() - 3_600_000
  await add(MANY, OLD, start)
  await add(FEW, 10, start + OLD + 10)
  await sql`analyze orders`
  // Newer orders of someone else arrive after the statistics were taken, as between two autovacuum runs.
  await add(OTHER, NEWER, start + OLD + 100)
  handle = createPostgresDatabase({ url, poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 30_000 })
}, 60_000)

afterAll(async () => {
  await handle?.close()
  await sql?.end()
})

describe("a customer's orders", () => {
  const customer = (userId: string) => ({ userId, role: 'customer' as const })

  it('page 1 of the customer who owns most of the table reads its own index, not the primary key past newer orders', async () => {
    const p = await plan(ordersPage(handle.db, customer(MANY), undefined, 21))
    expect(p).toEqual({ indexes: ['orders_user_created_idx'], removedByFilter: 0, sorted: false })
  })

  it('a deep page goes straight to its cursor', async () => {
    const [mid] = await sql`select id from orders where user_id = ${MANY} order by created_at desc, id desc offset ${OLD / 2} limit 1`
    const p = await plan(ordersPage(handle.db, customer(MANY), mid!.id as string, 21))
    expect(p.sorted).toBe(false)
    expect(p.removedByFilter).toBe(0)
    expect(p.indexes).toContain('orders_user_created_idx')
    const rows = await ordersPage(handle.db, customer(MANY), mid!.id as string, 21)
    expect(rows).toHaveLength(21)
    expect(rows.every((r) => r.userId === MANY)).toBe(true)
  })

  it('a customer with a few orders gets them all, newest first, through the same index', async () => {
    const p = await plan(ordersPage(handle.db, customer(FEW), undefined, 21))
    expect(p).toEqual({ indexes: ['orders_user_created_idx'], removedByFilter: 0, sorted: false })
    const rows = await ordersPage(handle.db, customer(FEW), undefined, 21)
    expect(rows.map((r) => r.createdAt.getTime())).toEqual(rows.map((r) => r.createdAt.getTime()).sort((a, b) => b - a))
    expect(rows).toHaveLength(10)
  })
})
