import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import { MINUTELY, runSchedule } from '../../src/features/schedule/index.ts'
import { createCache } from '../../src/infra/cache.ts'
import { createQstashDispatcher } from '../../src/infra/jobs/dispatch.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { expectProblem } from '../contract/helpers.ts'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { startEmailApi } from '../support/email-api.ts'
import { type QStashStandIn, startQStash } from '../support/qstash.ts'

/*
 * Jobs through QStash, end to end: the app publishes to the local QStash
 * stand-in, which delivers signed requests back; the app verifies them with
 * the real Receiver. Forged, expired and misdirected signatures run nothing.
 */

const ADMIN = { email: 'qstash-admin@example.test', password: 'qstash admin password' }
const KEYS = { current: 'sig_current_qstash_jobs', next: 'sig_next_qstash_jobs' }

let qstash: QStashStandIn
let mail: Awaited<ReturnType<typeof startEmailApi>>
let server: AppServer
let url: string
let db: postgres.Sql
let publicUrl: string
let admin: string
let buyer: string
let product: string

const call = async (
  path: string,
  body?: unknown,
  opts: { token?: string; key?: string; headers?: Record<string, string>; raw?: string } = {},
) => {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(opts.token ? { Authorization: `Bearer ${opts.token}` } : {}),
      ...(opts.key ? { 'Idempotency-Key': opts.key } : {}),
      ...opts.headers,
    },
    body: opts.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  })
  return res
}

beforeAll(async () => {
  url = await migratedDatabase('qstash_jobs')
  db = postgres(url, { max: 2, onnotice: () => {} })
  qstash = await startQStash({
    token: 'qstash-jobs-token',
    currentSigningKey: KEYS.current,
    nextSigningKey: KEYS.next,
    retryDelayScale: 0.000002,
  })
  mail = await startEmailApi({ apiKey: 'qstash-mail-key' })
  server = await startAppServer('node', (port) => ({
    NODE_ENV: 'production',
    DATABASE_URL: url,
    JWT_SECRET: 'qstash-jobs-secret-0123456789abcdef0',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    PAYMENT_PROVIDER: 'simulated',
    EMAIL_API_URL: mail.url,
    EMAIL_API_KEY: 'qstash-mail-key',
    EMAIL_FROM: 'shop@example.test',
    EMAIL_CIRCUIT_OPEN_MS: '100',
    QSTASH_URL: qstash.url,
    QSTASH_TOKEN: qstash.token,
    QSTASH_CURRENT_SIGNING_KEY: KEYS.current,
    QSTASH_NEXT_SIGNING_KEY: KEYS.next,
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    RATE_LIMIT_AUTH: '1000/60',
    LOG_LEVEL: 'warn',
  }))
  publicUrl = server.url
  admin = ((await (await call('/v1/auth/login', ADMIN)).json()) as { accessToken: string }).accessToken
  buyer = (
    (await (await call('/v1/auth/signup', { email: 'q@example.test', password: 'queue buyer password', name: 'Q' })).json()) as {
      accessToken: string
    }
  ).accessToken
  product = (
    (await (
      await call('/v1/products', { sku: 'Q-1', name: 'Queued', priceCents: 300, stock: 1000, category: 'q' }, { token: admin })
    ).json()) as {
      id: string
    }
  ).id
})

afterAll(async () => {
  await server?.stop()
  await qstash?.close()
  await mail?.close()
  await db?.end()
})

async function order(key: string): Promise<string> {
  const res = await call('/v1/orders', { items: [{ productId: product, quantity: 1 }] }, { token: buyer, key: `o-${key}` })
  expect(res.status).toBe(201)
  return ((await res.json()) as { id: string }).id
}

/** The first value of `what` that is `ok`, asked every 100 ms; the last one seen if time runs out, for the caller's assertion to show. */
async function until<T>(what: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  let last!: T
  return vi
    .waitFor(
      async () => {
        last = await what()
        if (!ok(last)) throw new Error('not yet')
        return last
      },
      { timeout: timeoutMs, interval: 100 },
    )
    .catch(() => last)
}

const jobOf = async (name: string, orderId: string) =>
  (await db`select * from jobs where name = ${name} and payload->>'orderId' = ${orderId}`)[0]

describe('signed deliveries', () => {
  it('the payment runs through QStash: published with the job id for deduplication, delivered, verified, paid', async () => {
    const id = await order('happy')
    expect((await call(`/v1/orders/${id}/pay`, { paymentToken: 'tok_ok' }, { token: buyer, key: 'p-happy' })).status).toBe(202)
    const status = await until(
      async () => (await db`select status from orders where id = ${id}`)[0]!.status as string,
      (s) => s === 'paid',
    )
    expect(status).toBe('paid')
    const job = await jobOf('payment.capture', id)
    // The order is paid inside the delivery; the stand-in marks the message delivered once the answer arrives.
    const message = await until(
      async () => qstash.messages().find((m) => m.deduplicationId === job!.id),
      (m) => m?.state === 'delivered',
    )
    expect(message).toMatchObject({ url: `${publicUrl}/internal/jobs/payment.capture`, state: 'delivered', maxRetries: 4 })
    expect(job!.dispatched_at).not.toBeNull()
  })

  it('forged, expired, wrong-key, other-URL and missing signatures are 401 invalid_signature, and nothing runs', async () => {
    const id = await order('forged')
    // a pending job that QStash will not deliver on its own: paused before it is paid
    await qstash.pause()
    await call(`/v1/orders/${id}/pay`, { paymentToken: 'tok_ok' }, { token: buyer, key: 'p-forged' })
    const job = await jobOf('payment.capture', id)
    const body = JSON.stringify({ jobId: job!.id })
    const path = '/internal/jobs/payment.capture'
    const cases: Record<string, string | undefined> = {
      'wrong key': await qstash.sign({ url: publicUrl + path, body, key: 'sig_someone_elses_key' }),
      expired: await qstash.sign({ url: publicUrl + path, body, expiresInSeconds: -120 }),
      'not yet valid': await qstash.sign({ url: publicUrl + path, body, notBeforeOffsetSeconds: 600 }),
      'other URL': await qstash.sign({ url: `${publicUrl}/internal/jobs/email.order_paid`, body }),
      'other body': await qstash.sign({ url: publicUrl + path, body: JSON.stringify({ jobId: crypto.randomUUID() }) }),
      garbage: 'not.a.jwt',
      missing: undefined,
    }
    for (const [name, signature] of Object.entries(cases)) {
      const res = await call(path, undefined, { raw: body, headers: signature ? { 'Upstash-Signature': signature } : {} })
      const problem = await expectProblem(res, 401, 'invalid_signature')
      expect(problem.code, name).toBe('invalid_signature')
    }
    expect(await jobOf('payment.capture', id)).toMatchObject({ status: 'pending', attempts: 0 })
    expect((await db`select status from orders where id = ${id}`)[0]!.status).toBe('payment_processing')

    // The next signing key is accepted (key rotation), and the job then runs once; a replay of the same delivery is a no-op.
    const good = await qstash.sign({ url: publicUrl + path, body, key: 'next' })
    const first = await call(path, undefined, { raw: body, headers: { 'Upstash-Signature': good } })
    expect(first.status).toBe(200)
    expect(await first.json()).toEqual({ status: 'done' })
    const replay = await call(path, undefined, { raw: body, headers: { 'Upstash-Signature': good } })
    expect(await replay.json()).toEqual({ status: 'already finished' })
    expect((await db`select count(*)::int as n from simulated_charges where idempotency_key = ${`capture:${job!.id}`}`)[0]!.n).toBe(1)
    await qstash.resume()
    // The publish failed while QStash was down: the only run was the signed delivery above.
    expect(qstash.messages().some((m) => m.deduplicationId === job!.id)).toBe(false)
    expect(await jobOf('payment.capture', id)).toMatchObject({ status: 'succeeded', attempts: 1, dispatched_at: null })
  })
})

describe('a burst of deliveries', () => {
  it('runs at most JOB_CONCURRENCY jobs at once; the rest wait their turn without a database connection, then all run', async () => {
    const gauge = async (name: string) => {
      const text = await (await fetch(`${server.url}/metrics`)).text()
      return Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1])
    }
    const ids: string[] = []
    for (let i = 0; i < 8; i++) ids.push(await order(`burst-${i}`))
    // Paid while QStash is away: the capture jobs wait in the table, and this test delivers them itself, all at once.
    await qstash.pause()
    for (const id of ids)
      expect((await call(`/v1/orders/${id}/pay`, { paymentToken: 'tok_ok' }, { token: buyer, key: `p-${id}` })).status).toBe(202)
    const path = '/internal/jobs/payment.capture'
    const bodies = await Promise.all(ids.map(async (id) => JSON.stringify({ jobId: (await jobOf('payment.capture', id))!.id })))
    const signed = await Promise.all(bodies.map((body) => qstash.sign({ url: publicUrl + path, body })))
    const backends = async () =>
      (await db`select count(*)::int as n from pg_stat_activity where application_name = 'edgeshop' and wait_event_type = 'Lock'`)[0]!
        .n as number

    // The orders stay locked here, so every job that starts blocks on its order's row, holding its slot.
    const lock = db.reserve()
    const held = await lock
    await held`begin`
    await held`select id from orders where id = any(${ids}::uuid[]) for update`
    const answers = bodies.map((body, i) => call(path, undefined, { raw: body, headers: { 'Upstash-Signature': signed[i]! } }))
    const seen = await until(
      async () => ({ running: await gauge('edgeshop_job_deliveries_running'), waiting: await gauge('edgeshop_job_deliveries_waiting') }),
      (g) => g.running === 2 && g.waiting === ids.length - 2,
    )
    expect(seen).toEqual({ running: 2, waiting: ids.length - 2 })
    expect(await until(backends, (n) => n === 2)).toBe(2)
    await held`commit`
    held.release()

    const results = await Promise.all(answers)
    expect(results.map((r) => r.status)).toEqual(ids.map(() => 200))
    for (const id of ids) expect((await db`select status from orders where id = ${id}`)[0]!.status).toBe('paid')
    expect({ running: await gauge('edgeshop_job_deliveries_running'), waiting: await gauge('edgeshop_job_deliveries_waiting') }).toEqual({
      running: 0,
      waiting: 0,
    })
    await qstash.resume()
  })
})

describe('retries, dead letters, outages', () => {
  it('an email the provider refuses is retried by QStash and sent once', async () => {
    mail.fail(2)
    const before = mail.sent.length
    const id = await order('retry')
    await call(`/v1/orders/${id}/pay`, { paymentToken: 'tok_ok' }, { token: buyer, key: 'p-retry' })
    const job = await until(
      () => jobOf('email.order_paid', id),
      (j) => j?.status === 'succeeded',
    )
    expect(job).toMatchObject({ status: 'succeeded', attempts: 3 })
    expect(mail.sent.slice(before).filter((m) => m.idempotencyKey === `email.order_paid:${id}`)).toHaveLength(1)
    const message = qstash.messages().find((m) => m.deduplicationId === job!.id)!
    expect(message.attempts.map((a) => a.status)).toEqual([503, 503, 200])
  })

  it('after the last retry QStash calls the failure callback: the job is dead; an admin queues it again and it runs', async () => {
    mail.fail(10_000)
    const id = await order('dead')
    await call(`/v1/orders/${id}/pay`, { paymentToken: 'tok_ok' }, { token: buyer, key: 'p-dead' })
    const dead = await until(
      () => jobOf('email.order_paid', id),
      (j) => j?.status === 'dead',
      20_000,
    )
    expect(dead).toMatchObject({ status: 'dead' })
    // Our last attempt marks the job dead; QStash's failure callback follows its own last retry.
    const callback = await until(
      async () => {
        const failed = qstash.messages().find((m) => m.deduplicationId === dead!.id)
        return qstash.messages().find((m) => m.kind === 'failure-callback' && m.sourceMessageId === failed?.messageId)?.state
      },
      (state) => state === 'delivered',
    )
    expect(callback).toBe('delivered')
    expect(qstash.messages().find((m) => m.deduplicationId === dead!.id)?.state).toBe('failed')

    mail.fail(0)
    await new Promise((r) => setTimeout(r, 150))
    const retry = await call(`/v1/admin/jobs/${dead!.id}/retry`, undefined, { token: admin })
    expect(retry.status).toBe(202)
    const done = await until(
      () => jobOf('email.order_paid', id),
      (j) => j?.status === 'succeeded',
    )
    expect(done).toMatchObject({ status: 'succeeded' })
    expect(mail.sent.filter((m) => m.idempotencyKey === `email.order_paid:${id}`)).toHaveLength(1)
  })

  it('with QStash unreachable, checkout and pay still answer; the minute schedule hands the jobs over once it is back', async () => {
    await qstash.pause()
    const id = await order('outage')
    const pay = await call(`/v1/orders/${id}/pay`, { paymentToken: 'tok_ok' }, { token: buyer, key: 'p-outage' })
    expect(pay.status).toBe(202)
    await new Promise((r) => setTimeout(r, 500))
    const stuck = await jobOf('payment.capture', id)
    expect(stuck).toMatchObject({ status: 'pending', dispatched_at: null })
    await qstash.resume()

    // The schedule, as any instance would run it a minute later.
    const handle = createPostgresDatabase({ url, poolMax: 2, timeoutMs: 2000, statementTimeoutMs: 5000 })
    const logger = createLogger({ level: 'silent' })
    const dispatcher = createQstashDispatcher({ url: qstash.url, token: qstash.token, publicUrl, logger, timeoutMs: 5000, maxInFlight: 64 })
    const pending: Promise<unknown>[] = []
    const report = await runSchedule(MINUTELY, new Date(Date.now() + 120_000), {
      db: handle.db,
      cache: createCache({ l1MaxEntries: 0, l1TtlMs: 1000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger }),
      dispatcher,
      logger,
      waitUntil: (p) => pending.push(p),
    })
    await Promise.all(pending)
    expect(report).toMatchObject({ ran: true })
    expect((report as unknown as { redispatchedJobs: number }).redispatchedJobs).toBeGreaterThanOrEqual(1)
    const status = await until(
      async () => (await db`select status from orders where id = ${id}`)[0]!.status as string,
      (s) => s === 'paid',
    )
    expect(status).toBe('paid')
    await handle.close()
  })
})
