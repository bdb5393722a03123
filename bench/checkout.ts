/**
 * Checkout rate and latency: `./run node bench/checkout.ts [--seconds 15] [--connections 32]`.
 *
 * Starts PostgreSQL and edgeshop (Bun and Node, PostgreSQL mode, embedded
 * job runner), creates products whose stock never runs out and a set of
 * customers, then drives POST /v1/orders (one line, a fresh Idempotency-Key
 * each) from `--connections` concurrent clients for `--seconds`, and prints
 * orders per second and latency percentiles. Every answer must be 201.
 */
import { Agent, request } from 'undici'
import { startAppServer } from '../test/support/app-server.ts'
import { startPostgres } from '../test/support/postgres.ts'
import { createMigratedDatabase } from '../test/support/services.ts'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const seconds = arg('seconds', 15)
const connections = arg('connections', 32)
const ADMIN = { email: 'bench-admin@example.test', password: 'bench admin password' }

const pg = await startPostgres()
const rows: string[] = []
for (const runtime of ['bun', 'node'] as const) {
  const url = await createMigratedDatabase(pg, `bench_checkout_${runtime}`)
  const server = await startAppServer(runtime, {
    NODE_ENV: 'production',
    DATABASE_URL: url,
    JWT_SECRET: 'bench-checkout-secret-0123456789abcdef',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
    RATE_LIMIT_AUTH: '100000/60',
    DATABASE_POOL_MAX: '16',
    LOG_LEVEL: 'warn',
  })
  const agent = new Agent({ connections, pipelining: 1 })
  const call = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
    const res = await request(`${server.url}${path}`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    })
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, string> }
  }
  try {
    const admin = (await call('/v1/auth/login', ADMIN)).body.accessToken!
    const products: string[] = []
    for (let i = 0; i < 20; i++) {
      products.push(
        (
          await call(
            '/v1/products',
            { sku: `BENCH-${i}`, name: `Bench ${i}`, priceCents: 999, stock: 1_000_000_000, category: 'bench' },
            { authorization: `Bearer ${admin}` },
          )
        ).body.id!,
      )
    }
    const tokens: string[] = []
    for (let i = 0; i < connections; i++) {
      tokens.push(
        (await call('/v1/auth/signup', { email: `bench${i}@example.test`, password: 'benchmark password', name: `B${i}` })).body
          .accessToken!,
      )
    }
    const latencies: number[] = []
    let failures = 0
    let n = 0
    const run = async (worker: number, until: number, record: boolean) => {
      while (Date.now() < until) {
        const started = performance.now()
        const res = await call(
          '/v1/orders',
          { items: [{ productId: products[(worker + n) % products.length], quantity: 1 }] },
          { authorization: `Bearer ${tokens[worker]}`, 'idempotency-key': `w${worker}-${n++}` },
        )
        if (!record) continue
        if (res.status === 201) latencies.push(performance.now() - started)
        else failures++
      }
    }
    await Promise.all(tokens.map((_, w) => run(w, Date.now() + 2000, false)))
    const started = Date.now()
    await Promise.all(tokens.map((_, w) => run(w, started + seconds * 1000, true)))
    const elapsed = (Date.now() - started) / 1000
    latencies.sort((a, b) => a - b)
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(1)
    rows.push(`| ${runtime} | ${connections} | ${(latencies.length / elapsed).toFixed(0)} | ${at(0.5)} | ${at(0.99)} | ${failures} |`)
  } finally {
    await agent.close()
    await server.stop()
  }
}
await pg.stop()
console.log(`\nPOST /v1/orders, ${seconds} s per runtime, PostgreSQL 15 (pool 16):\n`)
console.log('| runtime | connections | orders/s | p50 ms | p99 ms | non-201 |\n|---|---|---|---|---|---|')
for (const r of rows) console.log(r)
