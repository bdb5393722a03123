import { readFileSync } from 'node:fs'
import postgres from 'postgres'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { type QStashStandIn, startQStash } from '../support/qstash.ts'

/*
 * A QStash that accepts connections and never answers, against the app on
 * Bun with PostgreSQL. Every checkout's job must still be handed over once
 * QStash answers again, while it is silent the publishes it holds stay under
 * the cap, the process's memory does not grow with the checkouts, and SIGTERM
 * does not wait for answers that never come.
 */

const KEYS = { current: 'sig_current_qstash_silent', next: 'sig_next_qstash_silent' }
const ADMIN = { email: 'silent-admin@example.test', password: 'silent admin password' }
const TIMEOUT_MS = 1500
const MAX_IN_FLIGHT = 16
/** Checkouts before the memory baseline (warm-up), then blocks of checkouts measured against it. */
const WARM_UP = 1500
const BLOCK = 1500
const BLOCKS = 6
const MEASURED = BLOCK * BLOCKS
/**
 * Growth of resident memory allowed over the measured checkouts. Measured on a 2-core VM: bounded code wanders
 * within about 20 MB of its baseline (the collector's own rhythm); holding a publish per checkout grew about
 * 11 MB per 1000 checkouts, so about 80 MB here (and then never came back).
 */
const RSS_GROWTH_MB = 45

let qstash: QStashStandIn
let dbUrl: string
let db: postgres.Sql
let server: AppServer | undefined
const agent = new Agent({ connections: 32, keepAliveTimeout: 30_000 })

const settings = (port: number): Record<string, string> => ({
  NODE_ENV: 'production',
  DATABASE_URL: dbUrl,
  JWT_SECRET: 'qstash-silent-secret-0123456789abcdef',
  ADMIN_EMAIL: ADMIN.email,
  ADMIN_PASSWORD: ADMIN.password,
  PAYMENT_PROVIDER: 'simulated',
  MAILER: 'recording',
  QSTASH_URL: qstash.url,
  QSTASH_TOKEN: qstash.token,
  QSTASH_CURRENT_SIGNING_KEY: KEYS.current,
  QSTASH_NEXT_SIGNING_KEY: KEYS.next,
  QSTASH_TIMEOUT_MS: String(TIMEOUT_MS),
  QSTASH_MAX_IN_FLIGHT: String(MAX_IN_FLIGHT),
  PUBLIC_URL: `http://127.0.0.1:${port}`,
  // Each order's expiry job comes due within seconds, so that QStash delivers it during the test.
  ORDER_TTL_SECONDS: '5',
  // The in-process scheduler ticks once, at start; this test runs the minute schedule when it wants it.
  SCHEDULER_TICK_SECONDS: '3600',
  JOB_CONCURRENCY: '8',
  RATE_LIMIT_AUTH: '1000/60',
  LOG_LEVEL: 'error',
})

async function call(base: string, path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${base}${path}`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> }
}

/** A series of /metrics: `name` alone, or with its labels as rendered (`name{outcome="ok"}`). */
async function metric(base: string, series: string): Promise<number> {
  const res = await request(`${base}/metrics`, { dispatcher: agent })
  const text = await res.body.text()
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line ? Number(line.slice(series.length + 1)) : Number.NaN
}

/** Resident memory of the app's process, in MB. */
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024

/** `count` checkouts from `clients` concurrent clients; returns how many were answered 201. */
async function checkouts(base: string, token: string, product: string, count: number, tag: string, clients = 16) {
  let next = 0
  let created = 0
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = next++; i < count; i = next++) {
        const res = await call(
          base,
          '/v1/orders',
          { items: [{ productId: product, quantity: 1 }] },
          { authorization: `Bearer ${token}`, 'idempotency-key': `${tag}-${i}` },
        )
        if (res.status === 201) created++
      }
    }),
  )
  return created
}

beforeAll(async () => {
  dbUrl = await migratedDatabase('qstash_silent')
  db = postgres(dbUrl, { max: 2, onnotice: () => {} })
  qstash = await startQStash({
    token: 'qstash-silent-token',
    currentSigningKey: KEYS.current,
    nextSigningKey: KEYS.next,
    retryDelayScale: 0.001,
  })
})

afterAll(async () => {
  await server?.stop()
  await qstash?.close()
  await db?.end()
  await agent.close()
})

describe('a QStash that accepts and never answers', () => {
  it('holds at most the cap of publishes, keeps memory flat, stops within the bound, and every job is delivered once it answers', async () => {
    await qstash.pause({ mode: 'silent' })
    const app = await startAppServer('bun', settings)
    server = app
    const admin = (await call(app.url, '/v1/auth/login', ADMIN)).json.accessToken as string
    const buyer = (await call(app.url, '/v1/auth/signup', { email: 'silent@example.test', password: 'silent buyer password', name: 'S' }))
      .json.accessToken as string
    const product = (
      await call(
        app.url,
        '/v1/products',
        { sku: 'SILENT-1', name: 'Silent', priceCents: 100, stock: 1_000_000, category: 's' },
        { authorization: `Bearer ${admin}` },
      )
    ).json.id as string

    // Watched from both sides: the requests QStash holds open, and the app's own count of its publishes in flight.
    let mostHeld = 0
    let mostInFlight = 0
    let watching = true
    const watchHeld = setInterval(() => {
      mostHeld = Math.max(mostHeld, qstash.unanswered())
    }, 20)
    const watchInFlight = (async () => {
      while (watching) {
        mostInFlight = Math.max(mostInFlight, await metric(app.url, 'edgeshop_qstash_publishes_in_flight'))
        await new Promise((r) => setTimeout(r, 100))
      }
    })()
    try {
      expect(await checkouts(app.url, buyer, product, WARM_UP, 'warm')).toBe(WARM_UP)
      const baseline = rssMb(app.pid)
      const samples: number[] = []
      for (let block = 0; block < BLOCKS; block++) {
        expect(await checkouts(app.url, buyer, product, BLOCK, `measured-${block}`)).toBe(BLOCK)
        samples.push(rssMb(app.pid))
      }
      // The lower of the last two samples: a collection that has not come yet lifts one sample, not the floor.
      const after = Math.min(...samples.slice(-2))
      watching = false
      await watchInFlight
      const waiting = await metric(app.url, 'edgeshop_jobs_waiting_for_handover')
      const oldest = await metric(app.url, 'edgeshop_jobs_waiting_for_handover_oldest_seconds')
      const timedOut = await metric(app.url, 'edgeshop_qstash_publishes_total{outcome="timeout"}')
      const deferred = await metric(app.url, 'edgeshop_qstash_publishes_deferred_total')
      mostHeld = Math.max(mostHeld, qstash.unanswered())
      console.info(
        `silent QStash: RSS ${baseline.toFixed(0)} MB, then ${samples.map((m) => m.toFixed(0)).join(' ')} MB every ${BLOCK} checkouts; most publishes in flight ${mostInFlight}, held by QStash ${mostHeld}`,
      )
      expect.soft(mostInFlight).toBeLessThanOrEqual(MAX_IN_FLIGHT)
      // The cap, and a few the app has given up on whose close QStash has not seen yet.
      expect.soft(mostHeld).toBeLessThanOrEqual(MAX_IN_FLIGHT + 4)
      // Every job of the run is still waiting to be handed over, and the metrics say so.
      expect.soft(waiting).toBeGreaterThanOrEqual(WARM_UP + MEASURED - MAX_IN_FLIGHT)
      expect.soft(oldest).toBeGreaterThan(1)
      // Publishes ran past their bound, and jobs that found the cap reached were left for the schedule.
      expect.soft(timedOut).toBeGreaterThan(0)
      expect.soft(deferred).toBeGreaterThan(0)
      expect.soft(after - baseline).toBeLessThan(RSS_GROWTH_MB)
    } finally {
      watching = false
      clearInterval(watchHeld)
    }

    // A publish is pending right now; SIGTERM still ends within the publish bound (plus the process's own closing).
    await checkouts(app.url, buyer, product, 4, 'before-stop')
    await expect.poll(() => qstash.unanswered()).toBeGreaterThan(0)
    const stopAt = Date.now()
    expect(await app.stop()).toBe(0)
    const stopMs = Date.now() - stopAt
    console.info(`SIGTERM with publishes pending: exited in ${stopMs} ms`)
    expect.soft(stopMs).toBeLessThan(TIMEOUT_MS + 4000)
    server = undefined

    // QStash answers again: the minute schedule hands every job over, and each is delivered and runs once (over 10,000
    // jobs, with QStash delivering them back at once: a minute or more on a loaded 2-core machine).
    await qstash.resume()
    // Restarted with room for more publishes at once: the backlog is large, and the cap was checked above.
    const again = await startAppServer('bun', (port) => ({ ...settings(port), QSTASH_MAX_IN_FLIGHT: '64' }))
    server = again
    const total = WARM_UP + MEASURED + 4
    const [{ n: jobs } = { n: 0 }] = await db<{ n: number }[]>`select count(*)::int as n from jobs`
    expect(jobs).toBe(total)
    const tick = async () => {
      // As a minute later: this minute's slot free again, and every job past the hand-over bound.
      await db`delete from schedule_runs where schedule = '* * * * *'`
      await db`update jobs set created_at = created_at - interval '2 minutes' where dispatched_at is null`
      const url = `${again.url}/internal/schedules/minutely`
      const signature = await qstash.sign({ url, body: '' })
      const res = await request(url, { method: 'POST', dispatcher: agent, headers: { 'upstash-signature': signature } })
      return (await res.body.json()) as { ran: boolean; redispatchedJobs?: number }
    }
    const recoveryAt = Date.now()
    await expect
      .poll(
        async () => {
          await tick()
          // A job whose publish timed out here while QStash took it may be delivered (and done) before a tick records it.
          return (await db<{ n: number }[]>`select count(*)::int as n from jobs where status = 'pending' and dispatched_at is null`)[0]!.n
        },
        { timeout: 240_000, interval: 500 },
      )
      .toBe(0)
    await expect
      .poll(async () => (await db<{ n: number }[]>`select count(*)::int as n from jobs where status <> 'succeeded'`)[0]!.n, {
        timeout: 240_000,
        interval: 500,
      })
      .toBe(0)
    console.info(`QStash answering again: every job handed over and done ${Date.now() - recoveryAt} ms later`)
    const ids = (await db<{ id: string }[]>`select id from jobs`).map((r) => r.id)
    const published = new Map<string, number>()
    for (const m of qstash.messages()) if (m.deduplicationId) published.set(m.deduplicationId, (published.get(m.deduplicationId) ?? 0) + 1)
    expect(ids.filter((id) => published.get(id) !== 1)).toEqual([])
    expect(qstash.messages().filter((m) => m.kind === 'message' && m.state !== 'delivered')).toEqual([])
    expect(await metric(again.url, 'edgeshop_jobs_waiting_for_handover')).toBe(0)
  }, 720_000)
})
