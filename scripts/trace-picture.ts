/**
 * `./run trace:picture`: draws docs/img/order-trace.svg, the trace of one
 * order as a collector receives it. It starts PostgreSQL, Redis behind the
 * Upstash REST stand-in, the email API stand-in, an OTLP/HTTP receiver and
 * the service on Bun with the embedded runner; then a client that traces
 * reads a product, checks out and pays with `tok_flaky` (the capture fails
 * twice, then succeeds) under one `traceparent`, and the trace is drawn once
 * the confirmation email is sent. Takes about 20 s.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import postgres from 'postgres'
import { adminToken, ROOT, startAppServer } from '../test/support/app-server.ts'
import { startEmailApi } from '../test/support/email-api.ts'
import { startOtlpReceiver } from '../test/support/otlp-receiver.ts'
import { startPostgres } from '../test/support/postgres.ts'
import { startRedisServer } from '../test/support/redis-server.ts'
import { createMigratedDatabase } from '../test/support/services.ts'
import { startUpstashRest } from '../test/support/upstash-rest.ts'
import { renderTrace } from './trace-svg.ts'

const OUT = join(ROOT, 'docs/img/order-trace.svg')
const ADMIN = { email: 'picture-admin@example.test', password: 'picture admin password' }
const hex = (bytes: number) => Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (b) => b.toString(16).padStart(2, '0')).join('')

const pg = await startPostgres()
const redis = await startRedisServer()
const rest = await startUpstashRest({ redisPort: redis.port, token: 'picture-token' })
const mail = await startEmailApi({ apiKey: 'picture-mail-key' })
const otlp = await startOtlpReceiver()
const url = await createMigratedDatabase(pg, 'trace_picture')
const db = postgres(url, { max: 1, onnotice: () => {} })
const server = await startAppServer('bun', {
  DATABASE_URL: url,
  JWT_SECRET: 'trace-picture-secret-0123456789abcdef',
  ADMIN_EMAIL: ADMIN.email,
  ADMIN_PASSWORD: ADMIN.password,
  UPSTASH_REDIS_REST_URL: rest.url,
  UPSTASH_REDIS_REST_TOKEN: rest.token,
  EMAIL_API_URL: mail.url,
  EMAIL_API_KEY: 'picture-mail-key',
  EMAIL_FROM: 'shop@example.test',
  JOB_POLL_MS: '50',
  JOB_BACKOFF_BASE_MS: '20',
  OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
})
try {
  const traceId = hex(16)
  const traced = { traceparent: `00-${traceId}-${hex(8)}-01` }
  const call = async (method: string, path: string, body: unknown, headers: Record<string, string>, status: number) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    if (res.status !== status) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
    return (await res.json()) as { id: string; accessToken: string }
  }
  const admin = { Authorization: `Bearer ${await adminToken(server.url, ADMIN)}` }
  const product = { sku: 'PICTURE-1', name: 'Pictured', priceCents: 1250, stock: 10, category: 'picture' }
  const { id: productId } = await call('POST', '/v1/products', product, admin, 201)
  const signup = { email: 'buyer@example.test', password: 'picture buyer password', name: 'Buyer' }
  const buyer = { Authorization: `Bearer ${(await call('POST', '/v1/auth/signup', signup, {}, 201)).accessToken}`, ...traced }
  await call('GET', `/v1/products/${productId}`, undefined, traced, 200)
  const items = { items: [{ productId, quantity: 2 }] }
  const { id: orderId } = await call('POST', '/v1/orders', items, { ...buyer, 'Idempotency-Key': 'picture-order' }, 201)
  await call('POST', `/v1/orders/${orderId}/pay`, { paymentToken: 'tok_flaky' }, { ...buyer, 'Idempotency-Key': 'picture-pay' }, 202)
  for (const deadline = Date.now() + 20_000; ; ) {
    const [row] = await db`select status from jobs where name = 'email.order_paid' and payload->>'orderId' = ${orderId}`
    if (row?.status === 'succeeded') break
    if (Date.now() > deadline) throw new Error('the confirmation email was not sent within 20 s')
    await new Promise((r) => setTimeout(r, 100))
  }
  // A graceful stop exports the spans still batched.
  if ((await server.stop()) !== 0) throw new Error(`the service did not stop cleanly:\n${server.output()}`)
  const spans = otlp.spans().filter((s) => s.traceId === traceId)
  mkdirSync(dirname(OUT), { recursive: true })
  writeFileSync(OUT, renderTrace(spans, 'One order: product read, checkout, payment, capture (two retries), email — one trace'))
  process.stdout.write(`${spans.length} spans of trace ${traceId} drawn in ${OUT}\n`)
} finally {
  await server.stop()
  await db.end()
  await Promise.all([otlp.close(), mail.close(), rest.close()])
  await redis.stop()
  await pg.stop()
}
