/**
 * Scenario 10 of `./run bench`, idle order event streams: what an open
 * stream costs the server in memory, and what thousands of them cost the
 * events that do flow.
 *
 * Runs edgeshop on Bun and on Node, one after the other, against a database
 * of its own on the bench's PostgreSQL, each the only server running
 * (`alone()`). Customers and orders are written straight into the tables
 * and access tokens are signed here with the servers' secret, so no password
 * hash runs in the measured process. For each runtime:
 *
 * 1. warm-up: a few hundred streams opened and closed and a few orders paid
 *    (each paid on its own stream), then the server's RSS (VmRSS) with no
 *    stream open;
 * 2. the event latency with no other stream open: an order's stream is
 *    opened, the order paid (`POST /v1/orders/{id}/pay`), and the time from
 *    sending that request to the `payment_processing` event arriving on the
 *    stream is taken, one order at a time (half the changes here, half after
 *    step 5);
 * 3. N idle streams opened with raw TCP clients (`node:net`: a GET written,
 *    the answer read and thrown away), 500 per customer on one order each
 *    (`SSE_MAX_STREAMS_PER_USER` is at most 1000), until
 *    `edgeshop_sse_streams` on /metrics shows N; the RSS again, and
 *    (RSS_N − RSS_0) / N as the memory per stream;
 * 4. the same latency with the N streams open;
 * 5. every idle stream hung up, and the time until the gauge shows 0.
 *
 * The idle streams' orders never change: every event the run causes goes to
 * the one stream measured. Heartbeats stay at their default (15 s).
 */
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import postgres from 'postgres'
import { createAccessTokens } from '../src/features/accounts/tokens.ts'
import { uuidv7 } from '../src/lib/uuid.ts'
import type { PostgresServer } from '../test/support/postgres.ts'
import { createMigratedDatabase } from '../test/support/services.ts'
import {
  alone,
  cleanups,
  edgeshopCommand,
  fmtCount,
  post,
  rssKib,
  SECRET,
  type Server,
  say,
  seed,
  serve,
  serverEnv,
  sleep,
  startBusyLoop,
} from './harness.ts'
import type { LatencySummary, StreamsResult } from './results.ts'

/** Idle streams per customer: `SSE_MAX_STREAMS_PER_USER` allows at most 1000. */
export const STREAMS_PER_CUSTOMER = 500
/** Streams being opened at once (connected, not yet answered). */
const OPENING_AT_ONCE = 50
/** How long a stream count, an answer or an event may take before the run fails. */
const PATIENCE_MS = 120_000

/** The plan: idle streams, status changes measured in each state, and the warm-up's streams and changes. */
export function streamsPlan(quick: boolean) {
  return quick
    ? { streams: 200, events: 10, warmStreams: 50, warmEvents: 3 }
    : { streams: 5_000, events: 100, warmStreams: 500, warmEvents: 30 }
}

// ---------------------------------------------------------------- what the clients read

/** One server-sent event: its id, type and data (the lines of a message of the stream). */
export interface SseMessage {
  id?: string
  event?: string
  data?: string
  retry?: number
  comment?: string
}

/**
 * Reads one HTTP/1.1 answer as it arrives, in pieces of any size: its status,
 * then the body (chunked or not) as server-sent event messages. Text is taken
 * as latin1, one character per byte, so chunk sizes count right.
 */
export function sseReader() {
  let head = ''
  let status: number | undefined
  let chunked = false
  /** Body bytes not yet unframed (chunked), and unframed text not yet a whole message. */
  let framed = ''
  let text = ''
  /** Bytes left of the chunk being read, and of the CRLF after it (chunked bodies). */
  let left = 0
  let skip = 0

  const unframe = () => {
    for (;;) {
      if (left > 0) {
        const take = framed.slice(0, left)
        text += take
        left -= take.length
        framed = framed.slice(take.length)
        if (left > 0) return
        skip = 2
      }
      if (skip > 0) {
        const n = Math.min(skip, framed.length)
        framed = framed.slice(n)
        skip -= n
        if (skip > 0) return
      }
      const eol = framed.indexOf('\r\n')
      if (eol < 0) return
      const size = Number.parseInt(framed.slice(0, eol), 16)
      framed = framed.slice(eol + 2)
      // The last chunk (size 0) ends the answer.
      if (!(size > 0)) return
      left = size
    }
  }

  const messages = (): SseMessage[] => {
    const out: SseMessage[] = []
    for (let end = text.indexOf('\n\n'); end >= 0; end = text.indexOf('\n\n')) {
      const block = text.slice(0, end)
      text = text.slice(end + 2)
      const m: SseMessage = {}
      for (const line of block.split('\n')) {
        const colon = line.indexOf(':')
        const field = colon < 0 ? line : line.slice(0, colon)
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
        if (field === '') m.comment = value
        else if (field === 'id') m.id = value
        else if (field === 'event') m.event = value
        else if (field === 'data') m.data = m.data === undefined ? value : `${m.data}\n${value}`
        else if (field === 'retry') m.retry = Number(value)
      }
      out.push(m)
    }
    return out
  }

  return {
    /** The answer's status once its head has arrived. */
    get status() {
      return status
    },
    /** The messages completed by `piece`. */
    feed(piece: string): SseMessage[] {
      if (status === undefined) {
        head += piece
        const end = head.indexOf('\r\n\r\n')
        if (end < 0) return []
        status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0)
        chunked = /\r\ntransfer-encoding:[^\r]*chunked/i.test(head.slice(0, end))
        piece = head.slice(end + 4)
        head = ''
      }
      if (chunked) {
        framed += piece
        unframe()
      } else text += piece
      return messages()
    },
  }
}

/** `edgeshop_sse_streams` on /metrics (NaN when absent). */
export function streamsGaugeOf(metrics: string): number {
  return Number(/^edgeshop_sse_streams (\d+)$/m.exec(metrics)?.[1] ?? Number.NaN)
}

/** The soft limit on open files in `/proc/<pid>/limits` (Infinity when unlimited, NaN when absent). */
export function openFilesLimitOf(limits: string): number {
  const soft = /^Max open files\s+(\S+)/m.exec(limits)?.[1]
  return soft === undefined ? Number.NaN : soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft)
}

/** The nearest-rank percentile `p` (0–100) of `xs` (NaN when empty). */
export function percentile(xs: number[], p: number): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!
}

/** The p50, p99 and largest of some latencies. */
export function summarize(ms: number[]): LatencySummary {
  return { events: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: percentile(ms, 100) }
}

/** The memory a stream holds: the growth of the RSS over the streams open. */
export function kibPerStream(beforeKib: number, afterKib: number, streams: number): number {
  return streams > 0 ? (afterKib - beforeKib) / streams : Number.NaN
}

// ---------------------------------------------------------------- raw clients

interface RawStream {
  /** The answer's status (0: the connection ended before one). */
  answered: Promise<number>
  /** True once the connection ended, by either side. */
  readonly ended: boolean
  close(): void
}

/** A GET of `path` on a raw TCP connection; each message read goes to `onMessage` with the time it arrived. */
function openStream(port: number, path: string, token: string, onMessage?: (m: SseMessage, at: number) => void): RawStream {
  const reader = sseReader()
  const socket: Socket = connect({ host: '127.0.0.1', port })
  socket.setNoDelay(true)
  socket.setEncoding('latin1')
  let ended = false
  const answered = new Promise<number>((resolve) => {
    socket.on('data', (piece: string) => {
      const at = performance.now()
      const messages = reader.feed(piece)
      if (reader.status !== undefined) resolve(reader.status)
      if (onMessage) for (const m of messages) onMessage(m, at)
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      ended = true
      resolve(reader.status ?? 0)
    })
  })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\nAccept: text/event-stream\r\n\r\n`)
  return {
    answered,
    get ended() {
      return ended
    },
    close: () => void socket.destroy(),
  }
}

const gauge = async (server: Server) => streamsGaugeOf(await (await fetch(`${server.url}/metrics`)).text())

/** Polls /metrics until `edgeshop_sse_streams` is `n`; the time it took, in ms. */
async function untilGauge(server: Server, n: number): Promise<number> {
  const started = performance.now()
  for (let last = Number.NaN; ; ) {
    last = await gauge(server)
    if (last === n) return performance.now() - started
    if (performance.now() - started > PATIENCE_MS) throw new Error(`${server.name}: edgeshop_sse_streams stayed at ${last}, not ${n}`)
    await sleep(20)
  }
}

/** The server's RSS as the median of five readings 100 ms apart, in KiB (its collectors run on timers). */
async function settledRssKib(pid: number): Promise<number> {
  const readings: number[] = []
  for (let i = 0; i < 5; i++) {
    if (i > 0) await sleep(100)
    readings.push(rssKib(pid) ?? Number.NaN)
  }
  return percentile(readings, 50)
}

/** `n` idle streams over `orders` (each its customer's), `OPENING_AT_ONCE` at a time; the streams and how many were refused. */
async function openIdle(port: number, n: number, orders: Order[]): Promise<{ streams: RawStream[]; refused: number }> {
  const streams: RawStream[] = []
  let refused = 0
  let next = 0
  const opener = async () => {
    while (next < n) {
      const i = next++
      const order = orders[Math.floor(i / STREAMS_PER_CUSTOMER)]!
      const stream = openStream(port, `/v1/orders/${order.id}/events`, order.token)
      streams.push(stream)
      if ((await stream.answered) !== 200) refused++
    }
  }
  await Promise.all(Array.from({ length: OPENING_AT_ONCE }, opener))
  return { streams, refused }
}

/** Closes `streams` and waits until the server counts `remaining`; the time that took, in ms. */
async function closeAll(server: Server, streams: RawStream[], remaining = 0): Promise<number> {
  for (const s of streams) s.close()
  return untilGauge(server, remaining)
}

/** One status change: from sending the payment to its event arriving on the stream, and to the payment's answer, in ms. */
interface Change {
  eventMs: number
  answerMs: number
}

/**
 * One status change measured: `order`'s stream opened (beside `others` open
 * streams), the order paid, and the time from sending the payment to its
 * `payment_processing` event arriving on the stream (and to its answer).
 */
async function eventLatency(server: Server, port: number, order: Order, others: number): Promise<Change> {
  await untilGauge(server, others)
  let subscribed!: () => void
  let arrived!: (at: number) => void
  const ready = new Promise<void>((resolve) => (subscribed = resolve))
  const event = new Promise<number>((resolve) => (arrived = resolve))
  // The stream's `retry:` line comes once it listens: a change after it is sent.
  const stream = openStream(port, `/v1/orders/${order.id}/events`, order.token, (m, at) => {
    if (m.retry !== undefined) subscribed()
    if (m.event === 'status' && (JSON.parse(m.data ?? '{}') as { status?: string }).status === 'payment_processing') arrived(at)
  })
  try {
    const status = await stream.answered
    if (status !== 200) throw new Error(`${server.name}: the stream of order ${order.id} answered ${status}`)
    await within(ready, `${server.name}: the stream of order ${order.id} never opened`)
    const sent = performance.now()
    const paid = post(
      `${server.url}/v1/orders/${order.id}/pay`,
      { paymentToken: 'tok_ok' },
      { Authorization: `Bearer ${order.token}`, 'Idempotency-Key': `bench-streams-${order.id}` },
    ).then((res) => ({ res, at: performance.now() }))
    const at = await within(event, `${server.name}: no payment_processing event for order ${order.id}`)
    const answer = await paid
    if (answer.res.status !== 202) throw new Error(`${server.name}: paying order ${order.id} answered ${answer.res.status}`)
    return { eventMs: at - sent, answerMs: answer.at - sent }
  } finally {
    stream.close()
  }
}

async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within ${PATIENCE_MS / 1000} s`)), PATIENCE_MS)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------- the scenario

/** An order in pending_payment, and an access token of its owner. */
interface Order {
  id: string
  token: string
}

/** Customers with one order each, in pending_payment (no expiry job: they never change unless paid). */
async function makeOrders(sql: postgres.Sql, tag: string, customers: number, ordersEach: number): Promise<Order[][]> {
  const tokens = createAccessTokens({ secret: SECRET, ttlSeconds: 3 * 3600 })
  const [product] = await sql<{ id: string; sku: string; name: string; price_cents: number }[]>`
    select id, sku, name, price_cents from products where active order by id limit 1`
  const out: Order[][] = []
  for (let c = 0; c < customers; c++) {
    const userId = uuidv7()
    await sql`insert into users (id, email, name, password_hash) values (${userId}, ${`bench-streams-${tag}-${c}@example.test`}, ${`Bench ${tag} ${c}`}, '!')`
    const ids = Array.from({ length: ordersEach }, () => uuidv7())
    await sql`insert into orders (id, user_id, status, total_cents, currency, expires_at)
      select id, ${userId}, 'pending_payment', ${product!.price_cents}, 'USD', now() + interval '7 days' from unnest(${ids}::uuid[]) as t(id)`
    await sql`insert into order_items (order_id, product_id, sku, name, unit_price_cents, quantity)
      select id, ${product!.id}, ${product!.sku}, ${product!.name}, ${product!.price_cents}, 1 from unnest(${ids}::uuid[]) as t(id)`
    const { token } = await tokens.sign({ id: userId, role: 'customer' })
    out.push(ids.map((id) => ({ id, token })))
  }
  return out
}

/** Both runtimes' figures, each measured with its server the only one running. */
export async function streamsScenario(pg: PostgresServer, quick: boolean): Promise<StreamsResult[]> {
  const plan = streamsPlan(quick)
  // This process holds a socket per stream, and so does the server, which inherits the limit.
  const limit = openFilesLimitOf(readFileSync('/proc/self/limits', 'utf8'))
  if (limit < plan.streams + 1000)
    throw new Error(`${fmtCount(plan.streams)} streams need more open files than the limit of ${limit} allows: raise it (ulimit -n)`)
  const url = await createMigratedDatabase(pg, 'bench_streams')
  seed(url, 10)
  const sql = postgres(url, { max: 2, onnotice: () => {} })
  cleanups.push(() => sql.end({ timeout: 5 }))
  // The idle streams' orders, one per customer, shared by both runtimes; the measured orders, each paid once.
  const idleOrders = (await makeOrders(sql, 'idle', Math.ceil(plan.streams / STREAMS_PER_CUSTOMER), 1)).map((orders) => orders[0]!)
  const env = {
    ...serverEnv,
    DATABASE_URL: url,
    SSE_MAX_STREAMS_PER_USER: String(Math.min(1000, 2 * STREAMS_PER_CUSTOMER)),
    SSE_MAX_STREAMS: String(plan.streams + 1000),
    ORDER_TTL_SECONDS: String(7 * 24 * 3600),
  }
  const results: StreamsResult[] = []
  const stopBusyLoop = startBusyLoop()
  for (const [runtime, label] of [
    ['bun', 'Bun'],
    ['node', 'Node'],
  ] as const) {
    const [paid] = await makeOrders(sql, `paid-${runtime}`, 1, plan.warmEvents + 2 * plan.events)
    const server = await serve(`edgeshop-${runtime}-streams`, edgeshopCommand(runtime), env)
    const port = Number(new URL(server.url).port)
    try {
      results.push(
        await alone(server, async (): Promise<StreamsResult> => {
          const payable = paid!.slice()
          const nextOrder = () => payable.shift()!
          say(`streams on ${label}: warming up`)
          const warm = await openIdle(port, plan.warmStreams, idleOrders)
          await untilGauge(server, plan.warmStreams)
          for (let i = 0; i < plan.warmEvents; i++) await eventLatency(server, port, nextOrder(), plan.warmStreams)
          await closeAll(server, warm.streams)

          // Half the changes with no stream open come before the idle streams and half after, so that a server
          // still warming up, or the machine drifting, weighs on both sides alike.
          const idle: Change[] = []
          const noneOpen = async (n: number) => {
            for (let i = 0; i < n; i++) idle.push(await eventLatency(server, port, nextOrder(), 0))
          }
          await noneOpen(Math.floor(plan.events / 2))
          await untilGauge(server, 0)
          const rssBeforeKib = await settledRssKib(server.pid)

          say(`streams on ${label}: opening ${fmtCount(plan.streams)} idle streams`)
          const openStarted = performance.now()
          const { streams, refused } = await openIdle(port, plan.streams, idleOrders)
          if (refused > 0) throw new Error(`${server.name} refused ${refused} of ${plan.streams} streams`)
          await untilGauge(server, plan.streams)
          const openMs = performance.now() - openStarted
          const rssAfterKib = await settledRssKib(server.pid)

          const loaded: Change[] = []
          for (let i = 0; i < plan.events; i++) loaded.push(await eventLatency(server, port, nextOrder(), plan.streams))
          const dropped = streams.filter((s) => s.ended).length
          const closeMs = await closeAll(server, streams)
          await noneOpen(plan.events - Math.floor(plan.events / 2))
          const result: StreamsResult = {
            runtime: label,
            streams: plan.streams,
            rssBeforeKib,
            rssAfterKib,
            kibPerStream: kibPerStream(rssBeforeKib, rssAfterKib, plan.streams),
            openMs,
            idle: summarize(idle.map((c) => c.eventMs)),
            loaded: summarize(loaded.map((c) => c.eventMs)),
            idleAnswer: summarize(idle.map((c) => c.answerMs)),
            loadedAnswer: summarize(loaded.map((c) => c.answerMs)),
            closeMs,
            refused,
            dropped,
          }
          say(
            `streams on ${label}: ${fmtCount(plan.streams)} streams, ${result.kibPerStream.toFixed(1)} KiB each (RSS ${Math.round(rssBeforeKib / 1024)} → ${Math.round(rssAfterKib / 1024)} MB), ` +
              `event p50/p99 ${result.idle.p50.toFixed(2)}/${result.idle.p99.toFixed(2)} ms alone, ${result.loaded.p50.toFixed(2)}/${result.loaded.p99.toFixed(2)} ms beside them; back to 0 in ${Math.round(closeMs)} ms`,
          )
          return result
        }),
      )
    } finally {
      await server.stop()
    }
  }
  stopBusyLoop()
  return results
}
