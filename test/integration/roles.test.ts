import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DAILY, MINUTELY } from '../../src/features/schedule/index.ts'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { startEmailApi } from '../support/email-api.ts'

/*
 * ROLE=api and ROLE=worker processes on one PostgreSQL: two of each. The api
 * processes serve the API and never run a job; the workers run every job once
 * and answer only the operations endpoints.
 */

const SECRET = 'roles-test-secret-0123456789abcdef0123'
let sql: postgres.Sql
let mail: Awaited<ReturnType<typeof startEmailApi>>
let url: string
const servers: AppServer[] = []

const settings = (role: string) => ({
  NODE_ENV: 'production',
  ROLE: role,
  DATABASE_URL: url,
  JWT_SECRET: SECRET,
  PAYMENT_PROVIDER: 'simulated',
  EMAIL_API_URL: mail.url,
  EMAIL_API_KEY: 'roles-email-key',
  EMAIL_FROM: 'shop@roles.test',
  JOB_POLL_MS: '50',
})

beforeAll(async () => {
  url = await migratedDatabase('roles')
  sql = postgres(url, { max: 1, onnotice: () => {} })
  mail = await startEmailApi({ apiKey: 'roles-email-key' })
}, 60_000)

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()))
  await mail?.close()
  await sql?.end()
})

async function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

describe('ROLE=api and ROLE=worker on one PostgreSQL', () => {
  it('the api processes leave jobs to the workers, which run each once and serve only /healthz, /readyz and /metrics', async () => {
    const apis = await Promise.all([startAppServer('bun', settings('api')), startAppServer('node', settings('api'))])
    servers.push(...apis)
    const product = uuidv7()
    await sql`insert into products (id, sku, name, description, price_cents, currency, stock, category)
              values (${product}, 'ROLE-1', 'Roles', '', 500, 'USD', 100, 'roles')`

    const signup = await post(apis[0]!.url, '/v1/auth/signup', {
      email: `roles-${uuidv7()}@example.test`,
      password: 'roles test password',
      name: 'Roles',
    })
    expect(signup.status).toBe(201)
    const auth = { authorization: `Bearer ${((await signup.json()) as { accessToken: string }).accessToken}` }
    const orders: string[] = []
    for (let i = 0; i < 6; i++) {
      const api = apis[i % 2]!.url
      const placed = await post(
        api,
        '/v1/orders',
        { items: [{ productId: product, quantity: 1 }] },
        { ...auth, 'idempotency-key': `order-${i}` },
      )
      expect(placed.status).toBe(201)
      const { id } = (await placed.json()) as { id: string }
      const paid = await post(api, `/v1/orders/${id}/pay`, { paymentToken: 'tok_ok' }, { ...auth, 'idempotency-key': `pay-${i}` })
      expect(paid.status).toBe(202)
      orders.push(id)
    }
    // No worker yet: the captures wait in the table, none taken by an api process.
    const [waiting] = await sql<{ pending: number; taken: number }[]>`
      select count(*) filter (where status = 'pending')::int as pending, count(*) filter (where status <> 'pending')::int as taken
      from jobs where name = 'payment.capture'`
    expect(waiting).toEqual({ pending: 6, taken: 0 })

    // The workers tick every second and log every tick, run or skipped.
    const logs = [[], []] as Record<string, unknown>[][]
    const workerSettings = { ...settings('worker'), SCHEDULER_TICK_SECONDS: '1', LOG_LEVEL: 'debug' }
    const logInto = (lines: Record<string, unknown>[]) => {
      let partial = ''
      return {
        onOutput: (text: string) => {
          const split = (partial + text).split('\n')
          partial = split.pop()!
          for (const line of split) if (line.startsWith('{')) lines.push(JSON.parse(line))
        },
      }
    }
    const workers = await Promise.all([
      startAppServer('bun', workerSettings, logInto(logs[0]!)),
      startAppServer('node', workerSettings, logInto(logs[1]!)),
    ])
    servers.push(...workers)
    await expect
      .poll(async () => (await sql`select id from orders where id = any(${orders}::uuid[]) and status = 'paid'`).length, {
        timeout: 20_000,
      })
      .toBe(6)
    await expect.poll(() => mail.sent.length, { timeout: 20_000 }).toBe(6)
    // An email job is recorded as done after the provider answered it: wait for the rows, then count the runs.
    const unfinished = async () =>
      (await sql<{ n: number }[]>`select count(*)::int as n from jobs where name <> 'order.expire' and status <> 'succeeded'`)[0]!.n
    await expect.poll(unfinished, { timeout: 20_000 }).toBe(0)
    const done = await sql<{ name: string; status: string; attempts: number }[]>`
      select name, status, attempts from jobs where name <> 'order.expire' order by name`
    expect(done.filter((j) => j.attempts !== 1)).toEqual([])
    expect(done).toHaveLength(12)
    expect(new Set(mail.sent.map((m) => m.idempotencyKey)).size).toBe(6)

    for (const worker of workers) {
      expect((await fetch(`${worker.url}/healthz`)).status).toBe(200)
      expect((await fetch(`${worker.url}/readyz`)).status).toBe(200)
      const api = await fetch(`${worker.url}/v1/products/${product}`)
      expect(api.status).toBe(404)
      expect(api.headers.get('content-type')).toContain('application/problem+json')
    }
    for (const api of apis) expect((await fetch(`${api.url}/v1/products/${product}`)).status).toBe(200)

    // Schedule ticks: both workers offer every tick, and each slot runs once across them.
    const ticks = (lines: Record<string, unknown>[]) =>
      lines.filter((l) => l.schedule === MINUTELY && (l.msg === 'schedule ran' || l.msg === 'schedule tick skipped'))
    await expect.poll(() => Math.min(ticks(logs[0]!).length, ticks(logs[1]!).length), { timeout: 20_000 }).toBeGreaterThanOrEqual(3)
    const runs = logs.flat().filter((l) => l.msg === 'schedule ran')
    const slots = (cron: string) => runs.filter((l) => l.schedule === cron).map((l) => l.slot)
    expect(slots(MINUTELY).length).toBeGreaterThanOrEqual(1)
    expect(new Set(slots(MINUTELY)).size).toBe(slots(MINUTELY).length)
    expect(new Set(slots(DAILY)).size).toBe(slots(DAILY).length)
    const recorded = await sql<{ schedule: string; slot: Date }[]>`select schedule, slot from schedule_runs`
    expect(recorded.filter((r) => r.schedule === MINUTELY).map((r) => r.slot.toISOString())).toEqual(
      expect.arrayContaining(slots(MINUTELY)),
    )
    expect(logs.flat().filter((l) => l.msg === 'schedule tick skipped' && l.reason === 'already ran').length).toBeGreaterThan(0)
  }, 120_000)
})
