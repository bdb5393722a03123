import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { drainDueJobs } from '../../src/infra/jobs/jobs.ts'
import type { SessionBody } from '../contract/helpers.ts'
import { createTestApp } from '../support/test-app.ts'
import { type Actor, type FuzzRequest, type Pools, requestArbitrary } from './arbitraries.ts'
import { createHarness, type Harness, METRICS_TOKEN, type OrderBody, PASSWORD } from './harness.ts'
import { loadDocument, type OpenApiDocument, type Operation, operations } from './openapi-model.ts'
import { expectSafeAnswer, schemaViolations } from './requests.ts'

/*
 * Property-based requests generated from /openapi.json against every route,
 * with and without valid tokens (see arbitraries.ts for what is generated).
 * For every answer: no 5xx; every error is problem details with a known
 * `code`; every status is one the route documents; every 2xx body matches its
 * documented schema exactly; the security headers are there; nothing
 * internal leaks; nothing is logged as an unhandled error. After all routes:
 * every order that got a 2xx exists and belongs to whoever made it; per
 * product, stock + units held by live orders is what it was; no job is left
 * `running`.
 *
 * FUZZ_SEED (default 20230605) and FUZZ_RUNS (requests per route, default
 * 60) choose the run; CI uses the defaults. A longer random run:
 *   FUZZ_SEED=$RANDOM FUZZ_RUNS=1000 ./run vitest run test/security/fuzz.test.ts
 * FUZZ_REPORT=1 adds the statuses per route to the summary line. A failure
 * prints the seed and the path fast-check needs to replay it.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20230605)
const RUNS = Number(process.env.FUZZ_RUNS ?? 60)

/** Statuses any route may answer besides those it documents: the edge's body limit. */
const ANY_ROUTE = [413]

// The routes, read from the document at collection time (no database needed for it), so that each gets its own test.
const collect = await createTestApp({ database: 'unreachable' })
const ROUTES = operations(await loadDocument((path) => Promise.resolve(collect.app.request(path))))
await collect.close()

let h: Harness
let doc: OpenApiDocument
let alice: SessionBody
let bob: SessionBody
let pools: Pools
/** Per product: stock plus the units its live orders hold, as it must stay. */
const held = new Map<string, number>()
/** Orders that got a 2xx, with who made them. */
const answered = new Map<string, string | undefined>()
const figures = {
  requests: 0,
  byStatus: new Map<number, number>(),
  byBodyKind: new Map<string, number>(),
  byRoute: new Map<string, Map<number, number>>(),
  ms: 0,
}

async function heldUnits(productId: string): Promise<number> {
  const [row] = await h.sql<{ n: number }[]>`
    select p.stock + coalesce((
      select sum(i.quantity) from order_items i join orders o on o.id = i.order_id
      where i.product_id = p.id and o.status not in ('cancelled', 'expired')), 0)::int as n
    from products p where p.id = ${productId}`
  return row!.n
}

beforeAll(async () => {
  h = await createHarness({ tag: 'fuzz', env: { RATE_LIMIT_AUTH: '60/60', ORDER_TTL_SECONDS: '3600', LOG_LEVEL: 'info' } })
  ;[alice, bob] = await Promise.all([h.customer('alice'), h.customer('bob')])
  const products = await Promise.all([0, 1, 2, 3].map((i) => h.product({ stock: 500 + i, priceCents: 100 * (i + 1) })))
  const scratch = await Promise.all([0, 1].map(() => h.product({ stock: 20 })))
  const orders = await Promise.all([
    h.order(alice, [{ productId: products[0]!.id, quantity: 2 }]),
    h.order(bob, [{ productId: products[1]!.id, quantity: 1 }]),
  ])
  const jobs = await h.sql<{ id: string }[]>`select id from jobs`
  pools = {
    productIds: products.map((p) => p.id),
    scratchProductIds: scratch.map((p) => p.id),
    orderIds: orders.map((o) => o.id),
    cursors: [],
    jobIds: jobs.map((j) => j.id),
    refreshTokens: [alice.refreshToken, bob.refreshToken],
    emails: [alice.user.email, bob.user.email, 'security-admin@example.test'],
    password: PASSWORD,
  }
  for (const p of [...products, ...scratch]) held.set(p.id, await heldUnits(p.id))
  answered.set(orders[0]!.id, alice.user.id)
  answered.set(orders[1]!.id, bob.user.id)
})

afterAll(async () => {
  const statuses = [...figures.byStatus.entries()].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`)
  const kinds = [...figures.byBodyKind.entries()].map(([k, n]) => `${k}×${n}`)
  console.log(
    `[fuzz] seed ${SEED}, ${RUNS} runs per route, ${ROUTES.length} routes: ${figures.requests} requests in ${Math.round(figures.ms / 1000)} s; statuses ${statuses.join(' ')}; bodies ${kinds.join(', ')}`,
  )
  if (process.env.FUZZ_REPORT)
    for (const [route, statuses] of figures.byRoute)
      console.log(
        `[fuzz]   ${route}: ${[...statuses.entries()]
          .sort(([a], [b]) => a - b)
          .map(([st, n]) => `${st}×${n}`)
          .join(' ')}`,
      )
  await h?.close()
})

const tokens = (): Record<Actor, string | undefined> => ({
  anonymous: undefined,
  alice: alice.accessToken,
  bob: bob.accessToken,
  admin: h.adminToken,
  forged: `${alice.accessToken.split('.').slice(0, 2).join('.')}.${'A'.repeat(43)}`,
  metrics: METRICS_TOKEN,
})

const owner = (actor: Actor) => (actor === 'alice' ? alice.user.id : actor === 'bob' ? bob.user.id : undefined)

/** Sends one generated request and checks everything an answer owes; records what the invariants need. */
async function check(op: Operation, req: FuzzRequest): Promise<void> {
  const token = tokens()[req.actor]
  const headers: Record<string, string> = { ...req.headers, 'X-Forwarded-For': `10.99.0.${figures.requests % 4}` }
  if (token) headers.Authorization = `Bearer ${token}`
  const errorsBefore = h.t.logs.filter((l) => l.level === 'error').length
  const started = performance.now()
  const res = await h.t.app.request(req.path, { method: op.method, headers, body: req.body })
  const label = `${op.method} ${req.path.slice(0, 120)} as ${req.actor} with ${req.bodyKind} body`
  const answer = await expectSafeAnswer(res, label, op)
  figures.ms += performance.now() - started
  figures.requests++
  figures.byStatus.set(answer.status, (figures.byStatus.get(answer.status) ?? 0) + 1)
  figures.byBodyKind.set(req.bodyKind, (figures.byBodyKind.get(req.bodyKind) ?? 0) + 1)
  const route = figures.byRoute.get(op.id) ?? new Map<number, number>()
  route.set(answer.status, (route.get(answer.status) ?? 0) + 1)
  figures.byRoute.set(op.id, route)

  // The server's own account of a failure first: it says what went wrong.
  const unhandled = h.t.logs.filter((l) => l.level === 'error').slice(errorsBefore)
  expect(unhandled, label).toEqual([])
  expect(answer.status, `${label}: ${answer.text.slice(0, 300)}`).toBeLessThan(500)
  expect([...op.statuses, ...ANY_ROUTE], `${label}: ${answer.status} is not documented: ${answer.text.slice(0, 300)}`).toContain(
    answer.status,
  )
  const schema = op.success.get(answer.status)
  if (schema && answer.json !== undefined) expect(schemaViolations(doc, schema, answer.json), label).toEqual([])

  if (answer.status >= 300) return
  const body = answer.json as Record<string, unknown> | undefined
  if (op.path.startsWith('/v1/orders') && body && typeof body.id === 'string' && Array.isArray(body.items)) {
    const order = body as unknown as OrderBody
    if (!answered.has(order.id)) answered.set(order.id, op.method === 'POST' && op.path === '/v1/orders' ? owner(req.actor) : undefined)
    if (!pools.orderIds.includes(order.id)) pools.orderIds.push(order.id)
  }
  if (body && typeof body.nextCursor === 'string' && !pools.cursors.includes(body.nextCursor)) pools.cursors.push(body.nextCursor)
  if (op.path.startsWith('/v1/products') && body && typeof body.id === 'string' && op.method !== 'GET') {
    if (!pools.scratchProductIds.includes(body.id)) pools.scratchProductIds.push(body.id)
    // An admin set the stock (or created the product): from here on, this is what must hold.
    held.set(body.id, await heldUnits(body.id))
  }
  if (op.path.startsWith('/v1/auth/') && body && typeof body.refreshToken === 'string') pools.refreshTokens.push(body.refreshToken)
}

describe('fuzzing every route from /openapi.json', () => {
  beforeAll(async () => {
    doc = await loadDocument((path) => h.call('GET', path))
    expect(operations(doc).map((o) => o.id)).toEqual(ROUTES.map((o) => o.id))
  })

  it.each(ROUTES.map((op, i) => [op.id, op, i] as const))('%s', async (_, op, i) => {
    await fc.assert(
      fc.asyncProperty(requestArbitrary(doc, op, pools), (req) => check(op, req)),
      { seed: SEED + i, numRuns: RUNS, endOnFailure: true },
    )
  })

  it('the invariants hold afterwards: orders that got a 2xx exist, stock is conserved and never negative, no job is left running', async () => {
    // Jobs queued by the fuzzed payments run after their answers; let them finish, and run any retry that is due.
    const rt = h.t.services.jobs(h.t.services.scope())
    await vi.waitFor(
      async () => {
        await drainDueJobs(rt, 100)
        const [{ n }] =
          (await h.sql`select count(*)::int as n from jobs where status = 'running' or (status = 'pending' and run_at <= now())`) as unknown as [
            { n: number },
          ]
        if (n !== 0) throw new Error(`${n} jobs are still running or due`)
      },
      { timeout: 10_000, interval: 100 },
    )

    const ids = [...answered.keys()]
    const rows = await h.sql<{ id: string; user_id: string }[]>`select id, user_id from orders where id in ${h.sql(ids)}`
    expect(rows.map((r) => r.id).sort()).toEqual(ids.sort())
    for (const row of rows) {
      const madeBy = answered.get(row.id)
      if (madeBy !== undefined) expect(row.user_id, `order ${row.id}`).toBe(madeBy)
    }

    for (const [productId, units] of held) expect(await heldUnits(productId), `product ${productId}`).toBe(units)
    expect(await h.sql`select id, stock from products where stock < 0`).toEqual([])
    expect(await h.sql`select id, name from jobs where status = 'running'`).toEqual([])
    // Nothing secret was written to the log on the way (one line per request, plus warnings).
    const log = JSON.stringify(h.t.logs)
    for (const secret of [alice.accessToken, bob.accessToken, h.adminToken, PASSWORD, METRICS_TOKEN, ...pools.refreshTokens])
      expect(log.includes(secret), `the log holds ${secret.slice(0, 12)}…`).toBe(false)
    expect(h.t.logs.filter((l) => l.msg === 'request').length).toBeGreaterThanOrEqual(figures.requests)
    expect(figures.requests).toBeGreaterThanOrEqual(ROUTES.length * RUNS)
    expect(answered.size).toBeGreaterThan(2)
  })
})
