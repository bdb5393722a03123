import { Agent, request } from 'undici'

/*
 * A closed-loop load generator for black-box tests of edgeshop: `connections`
 * virtual clients, each over its own keep-alive connection, loop for a fixed
 * time and pick what to do next from a weighted mix:
 *
 *   browse     GET /v1/products/{id}, the first page of /v1/products, or a category's page
 *   login      POST /v1/auth/login as the client's customer; the new access token is used from then on
 *   checkout   POST /v1/orders, 1 to 3 lines, a fresh Idempotency-Key
 *   pay        POST /v1/orders/{id}/pay for the client's newest unpaid order (a checkout when it has none)
 *
 * Every answer is recorded: when it was sent and came back, its status, and
 * the problem `code` of an error (or the network error's code when there was
 * no HTTP answer). Checkouts and payments that get no answer or a 503 are
 * retried with the same key and body, as a careful client does, so retries
 * meet the idempotency guarantees too. Every order acknowledged with a 2xx is
 * remembered, so that the database can be checked against what clients were
 * told.
 */

export type Action = 'browse' | 'login' | 'checkout' | 'pay'
export const ACTIONS: readonly Action[] = ['browse', 'login', 'checkout', 'pay']

/** What the clients work with: products to browse and order, and customers to act as. */
export interface ShopFixture {
  products: { id: string; category: string }[]
  customers: { email: string; password: string; accessToken: string }[]
}

/** One request and its outcome. Times are epoch milliseconds. */
export interface Sample {
  action: Action
  start: number
  end: number
  /** The HTTP status; 0 when there was no HTTP answer. */
  status: number
  /** The problem `code` of an error answer, or the network error's code. */
  code?: string
  /** Index of the target (base URL) that was asked. */
  target: number
}

export interface LoadOptions {
  /** Base URLs; client i talks to `targets[i % targets.length]`. */
  targets: string[]
  shop: ShopFixture
  connections: number
  durationMs: number
  /** Relative weights; default browse 80, login 5, checkout 10, pay 5. */
  mix?: Record<Action, number>
  /** Payment tokens and their weights; default tok_ok 80, tok_declined 10, tok_flaky 10. */
  payTokens?: [string, number][]
  /** A request with no answer after this counts as hung (status 0, code `timeout`). Default 30 s. */
  requestTimeoutMs?: number
  seed?: number
}

export interface LoadResult {
  startedAt: number
  endedAt: number
  samples: Sample[]
  /** Ids of the orders a checkout answered 201 for (replays included, each id once). */
  acknowledgedOrders: string[]
  /** Ids of the orders a payment was accepted (202) for. */
  paymentsAccepted: string[]
}

export interface LoadRun {
  startedAt: number
  /** Resolves once every client has finished its last request. */
  done: Promise<LoadResult>
}

export const DEFAULT_MIX: Record<Action, number> = { browse: 80, login: 5, checkout: 10, pay: 5 }
const DEFAULT_TOKENS: [string, number][] = [
  ['tok_ok', 80],
  ['tok_declined', 10],
  ['tok_flaky', 10],
]
const RETRIES = 2
const RETRY_PAUSE_MS = 250
/** After a request got no HTTP answer: a pause, so that a refused port is not hammered in a tight loop. */
const NETWORK_ERROR_PAUSE_MS = 25

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** A small seeded PRNG (mulberry32): the same seed drives the same choices. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function weighted<T>(rnd: () => number, choices: [T, number][]): T {
  const total = choices.reduce((s, [, w]) => s + w, 0)
  let r = rnd() * total
  for (const [value, w] of choices) {
    r -= w
    if (r < 0) return value
  }
  return choices.at(-1)![0]
}

function errorCode(err: unknown): string {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT' ? 'timeout' : code
  }
  return err instanceof Error ? err.name : 'error'
}

/**
 * Starts the load; it stops by itself after `durationMs`.
 *
 * @example
 * ```ts
 * const run = startLoad({ targets: [server.url], shop, connections: 128, durationMs: 20_000 })
 * const result = await run.done
 * console.log(summarize(result.samples))
 * ```
 */
export function startLoad(opts: LoadOptions): LoadRun {
  const startedAt = Date.now()
  const until = startedAt + opts.durationMs
  const timeoutMs = opts.requestTimeoutMs ?? 30_000
  const mix = Object.entries(opts.mix ?? DEFAULT_MIX) as [Action, number][]
  const tokens = opts.payTokens ?? DEFAULT_TOKENS
  const perTarget = Math.ceil(opts.connections / opts.targets.length)
  const agents = opts.targets.map(
    () => new Agent({ connections: perTarget, pipelining: 1, keepAliveTimeout: 30_000, connect: { timeout: 5000 } }),
  )
  const samples: Sample[] = []
  const acknowledged = new Set<string>()
  const payments = new Set<string>()
  const { products, customers } = opts.shop
  const seed = opts.seed ?? 1

  async function send(
    client: number,
    action: Action,
    method: 'GET' | 'POST',
    path: string,
    headers: Record<string, string>,
    body?: unknown,
    wantBody = false,
  ): Promise<{ status: number; json?: Record<string, unknown> }> {
    const target = client % opts.targets.length
    const start = Date.now()
    try {
      const res = await request(`${opts.targets[target]}${path}`, {
        method,
        dispatcher: agents[target],
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      const status = res.statusCode
      let json: Record<string, unknown> | undefined
      if (wantBody || status >= 400) {
        const text = await res.body.text()
        try {
          json = JSON.parse(text) as Record<string, unknown>
        } catch {}
      } else {
        await res.body.dump()
      }
      const sample: Sample = { action, start, end: Date.now(), status, target }
      if (status >= 400) sample.code = typeof json?.code === 'string' ? json.code : 'no_problem_body'
      samples.push(sample)
      return { status, json }
    } catch (err) {
      samples.push({ action, start, end: Date.now(), status: 0, code: errorCode(err), target })
      await sleep(NETWORK_ERROR_PAUSE_MS)
      return { status: 0 }
    }
  }

  /** A POST that is retried with the same Idempotency-Key and body when it got no answer or a 503. */
  async function idempotent(client: number, action: Action, path: string, headers: Record<string, string>, body: unknown) {
    let res = await send(client, action, 'POST', path, headers, body, true)
    for (let retry = 0; retry < RETRIES && (res.status === 0 || res.status === 503); retry++) {
      await sleep(RETRY_PAUSE_MS)
      res = await send(client, action, 'POST', path, headers, body, true)
    }
    return res
  }

  async function client(i: number) {
    const rnd = random(seed * 1000 + i)
    const customer = customers[i % customers.length]!
    let token = customer.accessToken
    const unpaid: string[] = []
    let n = 0
    const pick = <T>(list: readonly T[]) => list[Math.floor(rnd() * list.length)]!

    const checkout = async () => {
      const lines = 1 + Math.floor(rnd() * 3)
      const chosen = new Set<string>()
      while (chosen.size < lines) chosen.add(pick(products).id)
      const items = [...chosen].map((productId) => ({ productId, quantity: 1 + Math.floor(rnd() * 3) }))
      const res = await idempotent(
        i,
        'checkout',
        '/v1/orders',
        { authorization: `Bearer ${token}`, 'idempotency-key': `s${seed}-c${i}-${n++}` },
        { items },
      )
      if (res.status === 201 && typeof res.json?.id === 'string') {
        acknowledged.add(res.json.id)
        unpaid.push(res.json.id)
        if (unpaid.length > 20) unpaid.shift()
      }
    }

    while (Date.now() < until) {
      const action = weighted(rnd, mix)
      if (action === 'browse') {
        const r = rnd()
        if (r < 0.5) await send(i, 'browse', 'GET', `/v1/products/${pick(products).id}`, {})
        else if (r < 0.8) await send(i, 'browse', 'GET', '/v1/products?limit=20', {})
        else await send(i, 'browse', 'GET', `/v1/products?limit=20&category=${pick(products).category}`, {})
      } else if (action === 'login') {
        const res = await send(i, 'login', 'POST', '/v1/auth/login', {}, { email: customer.email, password: customer.password }, true)
        if (res.status === 200 && typeof res.json?.accessToken === 'string') token = res.json.accessToken
      } else if (action === 'checkout' || unpaid.length === 0) {
        await checkout()
      } else {
        const orderId = unpaid.pop()!
        const res = await idempotent(
          i,
          'pay',
          `/v1/orders/${orderId}/pay`,
          { authorization: `Bearer ${token}`, 'idempotency-key': `s${seed}-p${i}-${n++}` },
          { paymentToken: weighted(rnd, tokens) },
        )
        if (res.status === 202) payments.add(orderId)
      }
    }
  }

  const done = (async () => {
    await Promise.all(Array.from({ length: opts.connections }, (_, i) => client(i)))
    const endedAt = Date.now()
    await Promise.all(agents.map((a) => a.close().catch(() => {})))
    samples.sort((a, b) => a.start - b.start)
    return { startedAt, endedAt, samples, acknowledgedOrders: [...acknowledged], paymentsAccepted: [...payments] }
  })()
  return { startedAt, done }
}

export interface Latency {
  p50: number
  p99: number
  max: number
}

export interface LoadSummary {
  requests: number
  /** Answers by HTTP status; `network:<code>` for requests that got none. */
  byStatus: Record<string, number>
  byAction: Record<Action, { requests: number; errors5xx: number; latencyMs: Latency }>
  /** Requests answered 5xx, and requests that got no HTTP answer. */
  errors5xx: number
  noAnswer: number
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Tallies samples: by status, by action, latency percentiles. */
export function summarize(samples: Sample[]): LoadSummary {
  const byStatus: Record<string, number> = {}
  const durations: Record<Action, number[]> = { browse: [], login: [], checkout: [], pay: [] }
  const errs: Record<Action, number> = { browse: 0, login: 0, checkout: 0, pay: 0 }
  let errors5xx = 0
  let noAnswer = 0
  for (const s of samples) {
    const key = s.status === 0 ? `network:${s.code}` : String(s.status)
    byStatus[key] = (byStatus[key] ?? 0) + 1
    durations[s.action].push(s.end - s.start)
    if (s.status >= 500) {
      errors5xx++
      errs[s.action]++
    }
    if (s.status === 0) noAnswer++
  }
  const byAction = {} as LoadSummary['byAction']
  for (const action of ACTIONS) {
    const d = durations[action].sort((a, b) => a - b)
    byAction[action] = {
      requests: d.length,
      errors5xx: errs[action],
      latencyMs: { p50: percentile(d, 50), p99: percentile(d, 99), max: d.at(-1) ?? 0 },
    }
  }
  return { requests: samples.length, byStatus, byAction, errors5xx, noAnswer }
}
