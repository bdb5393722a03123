import type postgres from 'postgres'

/*
 * What must hold after any run, whatever failed during it, read straight
 * from PostgreSQL in one snapshot (in the spirit of Jepsen's set and bank
 * checks):
 *
 * - set:   every order a client was told exists (a 2xx) is in the database;
 *          every order has exactly one stored checkout answer and every
 *          stored answer its order (a retried checkout never made a second one)
 * - bank:  per product, initial stock = current stock + units held by live
 *          orders (nothing leaked, nothing released twice), never negative
 * - once:  per paid order one captured charge and one confirmation email (in
 *          the database and at the email provider); none for other orders
 * - jobs:  none left `running`, none `dead`, no payment left unresolved
 */

export interface InvariantResult {
  name: string
  ok: boolean
  detail: string
}

export interface InvariantInput {
  /** Orders clients got a 2xx for. */
  acknowledgedOrders: string[]
  /** Stock per product id right after seeding. */
  initialStock: Map<string, number>
  /** What the email provider accepted (one entry per idempotency key). */
  providerSent: { idempotencyKey: string }[]
}

const LIVE = ['pending_payment', 'payment_processing', 'payment_failed', 'paid', 'fulfilled']
const PAID = new Set(['paid', 'fulfilled'])

const uuidArray = (ids: string[]) => `{${ids.join(',')}}`
const few = (list: string[]) => (list.length > 3 ? `${list.slice(0, 3).join('; ')}; … (${list.length})` : list.join('; '))

/** Checks every invariant in one read-only, repeatable-read snapshot. */
export async function checkInvariants(sql: postgres.Sql, input: InvariantInput): Promise<InvariantResult[]> {
  return (await sql.begin('isolation level repeatable read read only', async (tx) => {
    const results: InvariantResult[] = []
    const add = (name: string, bad: string[], detail: string) =>
      results.push({ name, ok: bad.length === 0, detail: bad.length === 0 ? detail : `${detail}; violations: ${few(bad)}` })

    const found = await tx<{ id: string }[]>`select id from orders where id = any(${uuidArray(input.acknowledgedOrders)}::uuid[])`
    const foundIds = new Set(found.map((r) => r.id))
    add(
      'every acknowledged order exists',
      input.acknowledgedOrders.filter((id) => !foundIds.has(id)).map((id) => `order ${id} missing`),
      `${foundIds.size}/${input.acknowledgedOrders.length} found`,
    )

    const [answers] = await tx<{ orders: number; unanswered: number; orphaned: number }[]>`
      with answers as (
        select body::jsonb->>'id' as id, count(*)::int as n from idempotency_keys where status = 201 group by 1
      )
      select
        (select count(*)::int from orders) as orders,
        (select count(*)::int from orders o left join answers a on a.id = o.id::text where a.n is distinct from 1) as unanswered,
        (select count(*)::int from answers a left join orders o on o.id::text = a.id where o.id is null) as orphaned`
    add(
      'one order per stored checkout answer',
      [
        ...(answers!.unanswered > 0 ? [`${answers!.unanswered} orders without exactly one stored answer`] : []),
        ...(answers!.orphaned > 0 ? [`${answers!.orphaned} stored answers without their order`] : []),
      ],
      `${answers!.orders} orders`,
    )

    const stock = await tx<{ id: string; stock: number; held: number }[]>`
      select p.id, p.stock,
        coalesce((select sum(i.quantity) from order_items i join orders o on o.id = i.order_id
                  where i.product_id = p.id and o.status in ${tx(LIVE)}), 0)::int as held
      from products p`
    const stockBad: string[] = []
    let held = 0
    for (const row of stock) {
      held += row.held
      const initial = input.initialStock.get(row.id)
      if (initial === undefined) stockBad.push(`unexpected product ${row.id}`)
      else if (initial !== row.stock + row.held) stockBad.push(`${row.id}: initial ${initial} ≠ stock ${row.stock} + held ${row.held}`)
      if (row.stock < 0) stockBad.push(`${row.id}: stock ${row.stock} < 0`)
    }
    if (stock.length !== input.initialStock.size) stockBad.push(`${stock.length} products, expected ${input.initialStock.size}`)
    add(
      'stock conserved: initial = current + held by live orders, never negative',
      stockBad,
      `${stock.length} products, ${held} units held`,
    )

    const orders = await tx<{ id: string; status: string; emails: number; captured: number }[]>`
      select o.id, o.status,
        (select count(*)::int from emails e where e.order_id = o.id and e.template = 'order_paid') as emails,
        (select count(*)::int from jobs j join simulated_charges c on c.idempotency_key = 'capture:' || j.id::text
          where j.name = 'payment.capture' and j.payload->>'orderId' = o.id::text and c.status = 'captured') as captured
      from orders o`
    const providerByOrder = new Map<string, number>()
    for (const s of input.providerSent) {
      const m = s.idempotencyKey.match(/^email\.order_paid:(.+)$/)
      if (m) providerByOrder.set(m[1]!, (providerByOrder.get(m[1]!) ?? 0) + 1)
    }
    const emailBad: string[] = []
    const chargeBad: string[] = []
    let paid = 0
    for (const o of orders) {
      const want = PAID.has(o.status) ? 1 : 0
      paid += want
      if (o.emails !== want) emailBad.push(`${o.status} order ${o.id} has ${o.emails} recorded emails`)
      const atProvider = providerByOrder.get(o.id) ?? 0
      if (atProvider !== want) emailBad.push(`${o.status} order ${o.id}: the provider sent ${atProvider}`)
      if (o.captured !== want) chargeBad.push(`${o.status} order ${o.id} has ${o.captured} captured charges`)
    }
    add('one confirmation email per paid order (recorded and at the provider), none for others', emailBad, `${paid} paid orders`)
    add('one captured charge per paid order, none for others', chargeBad, `${orders.length} orders`)

    const jobs = await tx<{ status: string; n: number }[]>`select status, count(*)::int as n from jobs group by status`
    const byStatus = Object.fromEntries(jobs.map((j) => [j.status, j.n])) as Record<string, number>
    const [processing] = await tx<{ n: number }[]>`select count(*)::int as n from orders where status = 'payment_processing'`
    add(
      'no job left running or dead, no payment left unresolved',
      [
        ...(byStatus.running ? [`${byStatus.running} jobs running`] : []),
        ...(byStatus.dead ? [`${byStatus.dead} jobs dead`] : []),
        ...(processing!.n > 0 ? [`${processing!.n} orders still payment_processing`] : []),
      ],
      Object.entries(byStatus)
        .map(([s, n]) => `${n} ${s}`)
        .join(', ') || 'no jobs',
    )
    return results
  })) as InvariantResult[]
}

/**
 * Waits until the payment and email jobs are done and no payment is in
 * flight (`all`: until every job, delayed expiries included, has finished).
 * Resolves with how long that took and what was left when the time ran out.
 */
export async function waitForJobs(
  sql: postgres.Sql,
  opts: { all: boolean; timeoutMs: number },
): Promise<{ waitedMs: number; left: number; pending: string[] }> {
  const started = Date.now()
  for (;;) {
    const [row] = await sql<{ left: number }[]>`
      select
        (select count(*)::int from jobs where status in ('pending', 'running') and (${opts.all} or name <> 'order.expire'))
        + (select count(*)::int from orders where status = 'payment_processing') as left`
    const left = row!.left
    if (left === 0) return { waitedMs: Date.now() - started, left, pending: [] }
    if (Date.now() - started > opts.timeoutMs) {
      // What is still waiting, for the report: enough to tell a lost hand-over from a job in backoff.
      const jobs = await sql<{ name: string; attempts: number; last_error: string | null; dispatched: boolean; token: string | null }[]>`
        select name, attempts, last_error, dispatched_at is not null as dispatched, payload->>'paymentToken' as token
        from jobs where status in ('pending', 'running') and (${opts.all} or name <> 'order.expire') limit 5`
      const pending = jobs.map(
        (j) =>
          `${j.name}${j.token ? ` (${j.token})` : ''}: ${j.attempts} attempts, ${j.dispatched ? 'handed over' : 'never handed over'}${j.last_error ? `, last error: ${j.last_error}` : ''}`,
      )
      return { waitedMs: Date.now() - started, left, pending }
    }
    await new Promise((r) => setTimeout(r, 250))
  }
}
