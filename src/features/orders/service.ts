import { and, desc, eq, gt, inArray, lt, sql } from 'drizzle-orm'
import { AppError, type FieldError } from '../../core/errors.ts'
import { decodeCursor, encodeCursor } from '../../core/page.ts'
import type { Principal } from '../../core/principal.ts'
import { type Database, pgArray, rowsOf, runStatement, type Transaction } from '../../db/database.ts'
import { orderItems, orders, products } from '../../db/schema.ts'
import { enqueueJob, type JobRef } from '../../infra/jobs/jobs.ts'
import { isUuid, uuidv7 } from '../../lib/uuid.ts'
import { activeTraceparent } from '../../observability/tracing.ts'

/*
 * Orders. Checkout is one short transaction; every later change of status is
 * one conditional UPDATE, so two racing transitions cannot both win, and the
 * stock an order holds is released by exactly the one transition that leaves
 * a holding status (pending_payment, payment_processing, payment_failed).
 */

type OrderRow = typeof orders.$inferSelect
type ItemRow = typeof orderItems.$inferSelect
export type OrderStatus = OrderRow['status']

/** A product whose stock or version changed; its cache entries must go. */
export interface ChangedProduct {
  id: string
  version: number
}

export const HOLDING: OrderStatus[] = ['pending_payment', 'payment_processing', 'payment_failed']
const PAYABLE: OrderStatus[] = ['pending_payment', 'payment_failed']
const CANCELLABLE: OrderStatus[] = ['pending_payment', 'payment_failed']

export function orderJson(order: OrderRow, items: ItemRow[]) {
  return {
    id: order.id,
    status: order.status,
    items: items.map((i) => ({
      productId: i.productId,
      sku: i.sku,
      name: i.name,
      unitPriceCents: i.unitPriceCents,
      quantity: i.quantity,
      lineTotalCents: i.unitPriceCents * i.quantity,
    })),
    totalCents: order.totalCents,
    currency: order.currency,
    createdAt: order.createdAt.toISOString(),
    updatedAt: order.updatedAt.toISOString(),
    expiresAt: order.expiresAt.toISOString(),
  }
}
export type OrderJson = ReturnType<typeof orderJson>

/**
 * Checkout's statements take arrays, and for an array parameter PostgreSQL
 * finds a custom plan (made for the values at hand) always cheaper than the
 * generic one: left to choose, it plans the statement again on every
 * execution, which was ~30 % of the database's CPU time per checkout. The
 * generic plans are the same index lookups at any array length (a nested
 * loop over the lines, by primary key), so the transaction asks for them.
 */
const GENERIC_PLANS = 'set local plan_cache_mode = force_generic_plan'

/** The checkout statement (see {@link checkout}); fixed text, so it is prepared once per connection. */
const CHECKOUT = `
  with lines as (select * from unnest($1::uuid[], $2::int[]) as t(id, qty)),
  locked as materialized (
    select p.id, l.qty from products p join lines l on l.id = p.id
    where p.active and p.stock >= l.qty
    order by p.id for update of p
  ),
  taken as (
    update products p
    set stock = p.stock - l.qty, version = p.version + 1, updated_at = $3::timestamptz
    from locked l
    where p.id = l.id and p.stock >= l.qty
    returning p.id, p.sku, p.name, p.price_cents, p.version, l.qty
  ),
  placed as (
    insert into orders (id, user_id, status, total_cents, currency, created_at, updated_at, expires_at)
    select $4::uuid, $5::uuid, 'pending_payment', sum(price_cents * qty), $6::text, $3::timestamptz, $3::timestamptz, $7::timestamptz
    from taken having count(*) = $8::int
    returning id
  ),
  items as (
    insert into order_items (order_id, product_id, sku, name, unit_price_cents, quantity)
    select placed.id, t.id, t.sku, t.name, t.price_cents, t.qty from placed, taken t
  ),
  expiry as (
    insert into jobs (id, name, payload, max_attempts, run_at, traceparent, created_at, updated_at)
    select $9::uuid, $10::text, $11::jsonb, $12::int, $7::timestamptz, $13::text, $3::timestamptz, $3::timestamptz from placed
  )
  select id, sku, name, price_cents, version from taken`

/**
 * Checkout in one statement, one round trip: a data-modifying CTE takes
 * stock for every line with one conditional UPDATE (`stock >= quantity`),
 * and only when every line was taken inserts the order, its items and its
 * expiry job. When a line is short the statement inserts nothing, and the
 * caller's transaction rolls the partial stock changes back (see
 * {@link refuse}). Prices and names come from the database, never from the
 * client. The UPDATE takes only rows the statement has first locked in id
 * order (`locked`: the UPDATE alone may be planned as a hash join over a
 * scan of products, which would lock them in table order, and two
 * multi-line checkouts taking rows in different orders deadlock, 40P01).
 * Only rows that can give the quantity are locked: a sold-out product is
 * refused at once instead of queueing behind every checkout that holds it.
 */
export async function checkout(
  tx: Transaction,
  input: { userId: string; items: { productId: string; quantity: number }[] },
  opts: { currency: string; ttlSeconds: number; now?: Date },
): Promise<{ order: OrderJson; jobs: JobRef[]; changed: ChangedProduct[] }> {
  const now = opts.now ?? new Date()
  const orderId = uuidv7(now.getTime())
  const expiresAt = new Date(now.getTime() + opts.ttlSeconds * 1000)
  const job: JobRef = {
    id: uuidv7(now.getTime()),
    name: 'order.expire',
    runAt: expiresAt,
    maxAttempts: 10,
    generation: 0,
    traceparent: activeTraceparent() ?? null,
  }
  const at = now.toISOString()
  const ids = pgArray(input.items.map((i) => i.productId))
  // Sent in the same round trip as the statements it is for; a failure fails them too, and is answered through them.
  runStatement(tx, GENERIC_PLANS, []).catch(() => {})
  const taken = await runStatement<{ id: string; sku: string; name: string; price_cents: number; version: number }>(tx, CHECKOUT, [
    ids,
    pgArray(input.items.map((i) => i.quantity)),
    at,
    orderId,
    input.userId,
    opts.currency,
    expiresAt.toISOString(),
    input.items.length,
    job.id,
    job.name,
    JSON.stringify({ orderId }),
    job.maxAttempts,
    job.traceparent,
  ])
  if (taken.length < input.items.length) await refuse(tx, input.items, new Set(taken.map((t) => t.id)))

  const byId = new Map(taken.map((t) => [t.id, t]))
  const items: ItemRow[] = input.items.map((line) => {
    const p = byId.get(line.productId)!
    return { orderId, productId: p.id, sku: p.sku, name: p.name, unitPriceCents: p.price_cents, quantity: line.quantity }
  })
  const order: OrderRow = {
    id: orderId,
    userId: input.userId,
    status: 'pending_payment',
    totalCents: items.reduce((sum, i) => sum + i.unitPriceCents * i.quantity, 0),
    currency: opts.currency,
    createdAt: now,
    updatedAt: now,
    expiresAt,
  }
  return { order: orderJson(order, items), jobs: [job], changed: taken.map((t) => ({ id: t.id, version: t.version })) }
}

/** Explains why some lines could not be taken: unknown or archived products (422) before shortfalls (409). */
async function refuse(tx: Transaction, lines: { productId: string; quantity: number }[], taken: Set<string>): Promise<never> {
  const missing = lines.filter((l) => !taken.has(l.productId))
  const found = await tx
    .select({ id: products.id, sku: products.sku, stock: products.stock, active: products.active })
    .from(products)
    .where(
      inArray(
        products.id,
        missing.map((m) => m.productId),
      ),
    )
  const state = new Map(found.map((f) => [f.id, f]))
  const unknown: FieldError[] = []
  const short: FieldError[] = []
  lines.forEach((line, index) => {
    if (taken.has(line.productId)) return
    const p = state.get(line.productId)
    if (!p?.active)
      unknown.push({ path: `body.items.${index}.productId`, message: `product ${line.productId} does not exist or is archived` })
    else short.push({ path: `body.items.${index}.quantity`, message: `only ${p.stock} of ${p.sku} (${p.id}) left` })
  })
  if (unknown.length > 0) throw new AppError('unknown_product', 'Some products cannot be ordered', { errors: unknown })
  throw new AppError('insufficient_stock', 'Not enough stock for some products; nothing was reserved', { errors: short })
}

/** An id that is not a UUID is simply unknown. */
function knownId(id: string): void {
  if (!isUuid(id)) throw new AppError('not_found', 'No order with this id')
}

async function itemsOf(db: Database | Transaction, orderIds: string[]): Promise<Map<string, ItemRow[]>> {
  const rows = orderIds.length === 0 ? [] : await db.select().from(orderItems).where(inArray(orderItems.orderId, orderIds))
  const map = new Map<string, ItemRow[]>()
  for (const r of rows) {
    const list = map.get(r.orderId) ?? []
    list.push(r)
    map.set(r.orderId, list)
  }
  return map
}

/** The order when the principal may see it (its owner, or an admin); otherwise 404, which does not reveal that it exists. */
export async function getOrder(db: Database | Transaction, id: string, principal: Principal): Promise<OrderJson> {
  knownId(id)
  const [order] = await db.select().from(orders).where(eq(orders.id, id)).limit(1)
  if (!order || (order.userId !== principal.userId && principal.role !== 'admin')) throw new AppError('not_found', 'No order with this id')
  return orderJson(order, (await itemsOf(db, [id])).get(id) ?? [])
}

/**
 * One page of orders, newest first. A customer's go by creation time through
 * `(user_id, created_at, id)`: ordered by id, PostgreSQL would walk the
 * primary key backwards for a customer who owns most of the table, past
 * every newer order of everyone else. An admin's view of all orders is the
 * primary key's order. `after` is the id of the last order of the page before.
 */
export function ordersPage(db: Database, principal: Principal, after: string | undefined, limit: number) {
  if (principal.role === 'admin') {
    return db
      .select()
      .from(orders)
      .where(after === undefined ? undefined : lt(orders.id, after))
      .orderBy(desc(orders.id))
      .limit(limit)
  }
  return db
    .select()
    .from(orders)
    .where(
      and(
        eq(orders.userId, principal.userId),
        after === undefined
          ? undefined
          : sql`(${orders.createdAt}, ${orders.id}) < (select o.created_at, o.id from ${orders} o where o.id = ${after})`,
      ),
    )
    .orderBy(desc(orders.createdAt), desc(orders.id))
    .limit(limit)
}

/** A page of the caller's orders (an admin's: everybody's), newest first: two queries, whatever the page size. */
export async function listOrders(db: Database, principal: Principal, query: { limit: number; cursor?: string | undefined }) {
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor)
  if (query.cursor !== undefined && after === undefined) {
    throw new AppError('validation_failed', 'The cursor is not valid', {
      errors: [{ path: 'query.cursor', message: 'is not a cursor from this API' }],
    })
  }
  const rows = await ordersPage(db, principal, after, query.limit + 1)
  const more = rows.length > query.limit
  const page = more ? rows.slice(0, query.limit) : rows
  const items = await itemsOf(
    db,
    page.map((o) => o.id),
  )
  return { items: page.map((o) => orderJson(o, items.get(o.id) ?? [])), nextCursor: more ? encodeCursor(page.at(-1)!.id) : null }
}

/**
 * The latest `limit` orders holding each of `productIds` (an admin's view),
 * newest first: two statements whatever the number of products — the orders,
 * then their items. Each product's are read from the end of its run in
 * `order_items_by_product` (a lateral join, `limit` rows a product), never
 * from its whole history. Products without orders are absent.
 */
export async function ordersOfProducts(db: Database, productIds: readonly string[], limit: number): Promise<Map<string, OrderJson[]>> {
  const ids = [...new Set(productIds.filter(isUuid).map((id) => id.toLowerCase()))]
  if (ids.length === 0) return new Map()
  const wanted = sql`unnest(${pgArray(ids)}::uuid[]) as wanted(product_id)`
  const latest = db
    .select({ orderId: orderItems.orderId, productId: orderItems.productId })
    .from(orderItems)
    .where(eq(orderItems.productId, sql`wanted.product_id`))
    .orderBy(desc(orderItems.orderId))
    .limit(limit)
    .as('latest')
  const rows = await db
    .select({ productId: latest.productId, order: orders })
    .from(wanted)
    .innerJoinLateral(latest, sql`true`)
    .innerJoin(orders, eq(orders.id, latest.orderId))
    .orderBy(desc(orders.id))
  const items = await itemsOf(db, [...new Set(rows.map((r) => r.order.id))])
  const byProduct = new Map<string, OrderJson[]>()
  for (const { productId, order } of rows) {
    const list = byProduct.get(productId) ?? []
    list.push(orderJson(order, items.get(order.id) ?? []))
    byProduct.set(productId, list)
  }
  return byProduct
}

/** Why a transition found nothing to change: 404 for an order the principal cannot see, 409 otherwise. */
async function refuseTransition(db: Database | Transaction, id: string, principal: Principal, wanted: string): Promise<never> {
  const [order] = await db
    .select({ userId: orders.userId, status: orders.status, expiresAt: orders.expiresAt })
    .from(orders)
    .where(eq(orders.id, id))
    .limit(1)
  if (!order || (order.userId !== principal.userId && principal.role !== 'admin')) throw new AppError('not_found', 'No order with this id')
  const expired = PAYABLE.includes(order.status) && order.expiresAt.getTime() <= Date.now()
  throw new AppError(
    'invalid_state',
    `Cannot ${wanted} an order that is ${expired ? 'past its payment deadline' : order.status.replace('_', ' ')}`,
  )
}

/** Starts payment: the order moves to payment_processing and the capture is queued (202; it happens in a job). Owner only. */
export async function payOrder(
  tx: Transaction,
  id: string,
  principal: Principal,
  paymentToken: string,
): Promise<{ order: OrderJson; jobs: JobRef[] }> {
  knownId(id)
  const now = new Date()
  const [order] = await tx
    .update(orders)
    .set({ status: 'payment_processing', updatedAt: now })
    .where(and(eq(orders.id, id), eq(orders.userId, principal.userId), inArray(orders.status, PAYABLE), gt(orders.expiresAt, now)))
    .returning()
  if (!order) {
    const [other] = await tx.select({ userId: orders.userId }).from(orders).where(eq(orders.id, id)).limit(1)
    if (other && other.userId !== principal.userId) throw new AppError('not_found', 'No order with this id')
    return refuseTransition(tx, id, principal, 'pay')
  }
  const job = await enqueueJob(tx, { name: 'payment.capture', payload: { orderId: id, paymentToken }, maxAttempts: 5 }, now)
  return { order: orderJson(order, (await itemsOf(tx, [id])).get(id) ?? []), jobs: [job] }
}

/** Gives back the stock of orders that just left a holding status; in their transaction. */
export async function releaseStock(tx: Transaction, orderIds: string[]): Promise<ChangedProduct[]> {
  if (orderIds.length === 0) return []
  // In id order first, like checkout: the UPDATE's join may take the rows in table order (see CHECKOUT).
  await tx.execute(sql`
    select p.id from products p
    where p.id in (select product_id from order_items where order_id = any(${pgArray(orderIds)}::uuid[]))
    order by p.id for update`)
  return rowsOf<ChangedProduct>(
    await tx.execute(sql`
      update products p
      set stock = p.stock + x.qty, version = p.version + 1, updated_at = now()
      from (
        select product_id, sum(quantity)::int as qty from order_items
        where order_id = any(${pgArray(orderIds)}::uuid[]) group by product_id order by product_id
      ) x
      where p.id = x.product_id
      returning p.id, p.version`),
  )
}

/** Cancels an unpaid order (its owner or an admin) and releases its stock, once. */
export async function cancelOrder(
  db: Database,
  id: string,
  principal: Principal,
): Promise<{ order: OrderJson; changed: ChangedProduct[] }> {
  knownId(id)
  return db.transaction(async (tx) => {
    const [order] = await tx
      .update(orders)
      .set({ status: 'cancelled', updatedAt: new Date() })
      .where(
        and(
          eq(orders.id, id),
          principal.role === 'admin' ? undefined : eq(orders.userId, principal.userId),
          inArray(orders.status, CANCELLABLE),
        ),
      )
      .returning()
    if (!order) return refuseTransition(tx as Transaction, id, principal, 'cancel')
    const changed = await releaseStock(tx as Transaction, [id])
    return { order: orderJson(order, (await itemsOf(tx as Transaction, [id])).get(id) ?? []), changed }
  })
}

/** Marks a paid order fulfilled (admin). */
export async function fulfilOrder(db: Database, id: string, principal: Principal): Promise<OrderJson> {
  knownId(id)
  const [order] = await db
    .update(orders)
    .set({ status: 'fulfilled', updatedAt: new Date() })
    .where(and(eq(orders.id, id), eq(orders.status, 'paid')))
    .returning()
  if (!order) return refuseTransition(db, id, principal, 'fulfil')
  return orderJson(order, (await itemsOf(db, [id])).get(id) ?? [])
}

/**
 * Expires unpaid orders past their deadline — one order (its expiry job) or
 * a batch of the oldest (the minute schedule) — and releases their stock, in
 * the caller's transaction. Concurrent runs take disjoint rows (`SKIP
 * LOCKED`), and the conditional UPDATE expires each order once.
 */
export async function expireOrders(
  tx: Transaction,
  opts: { orderId?: string; limit?: number; now?: Date },
): Promise<{ expired: string[]; changed: ChangedProduct[] }> {
  const now = opts.now ?? new Date()
  const expired = rowsOf<{ id: string }>(
    await tx.execute(sql`
      with due as (
        select id from orders
        where status in ('pending_payment', 'payment_failed') and expires_at <= ${now.toISOString()}::timestamptz
          ${opts.orderId ? sql`and id = ${opts.orderId}` : sql``}
        order by expires_at
        limit ${opts.limit ?? 500}
        for update skip locked
      )
      update orders o set status = 'expired', updated_at = ${now.toISOString()}::timestamptz
      from due where o.id = due.id and o.status in ('pending_payment', 'payment_failed')
      returning o.id`),
  ).map((r) => r.id)
  return { expired, changed: await releaseStock(tx, expired) }
}
