/**
 * Benchmark peer: `GET /v1/products/:id` the usual Elysia way on Bun — Elysia,
 * Bun's built-in Redis client and Bun's built-in SQL for misses, cache-aside:
 * GET the key from Redis; on a miss SELECT the row, SET it in Redis with a
 * TTL, answer.
 *
 *   PORT=4103 DATABASE_URL=postgres://… REDIS_URL=redis://127.0.0.1:6379 bun bench/peers/elysia.ts
 *
 * Env: PORT (required), HOST (default 127.0.0.1), DATABASE_URL, REDIS_URL.
 * Prints one line when it listens (Redis and PostgreSQL already answered by
 * then) and nothing per request: no request log at all.
 *
 * Same as edgeshop's answer: status 200, the same body bytes (edgeshop's
 * product JSON: field order, ISO timestamps with milliseconds), `Content-Type:
 * application/json`, `ETag: "<version>"`, edgeshop's `Cache-Control`; a 304
 * when `If-None-Match` is that tag. Unknown, archived and non-UUID ids are
 * 404. The Redis value is the JSON itself, under `product:<lower-case id>` with
 * edgeshop's L2 TTL (300 s), so a hit is GET + send.
 *
 * Not done here, and done by edgeshop: security headers, request ids, a log
 * line and metrics per request, an in-process L1 cache, versioned cache writes
 * that can never put stale bytes back, single-flight misses, falling back to
 * the database when Redis fails (here a Redis error is a 500), CORS, rate
 * limits, body limits, problem-details errors. Bun.serve's idle timeout stays
 * at its default (10 s; edgeshop sets 60 s), which only matters for idle
 * keep-alive connections.
 */
import { RedisClient, SQL } from 'bun'
import { Elysia } from 'elysia'
import { CACHE_CONTROL, etagOf, NOT_FOUND, productJson, TTL_SECONDS, UUID } from './product.mjs'

const { PORT, HOST = '127.0.0.1', DATABASE_URL, REDIS_URL } = process.env
if (!PORT || !DATABASE_URL || !REDIS_URL) {
  console.error('elysia peer: PORT, DATABASE_URL and REDIS_URL are required')
  process.exit(2)
}

const NOT_FOUND_JSON = JSON.stringify(NOT_FOUND)

const sql = new SQL(DATABASE_URL, { max: 10 })
const redis = new RedisClient(REDIS_URL)

interface ProductRow {
  id: string
  sku: string
  name: string
  description: string
  price_cents: number
  currency: string
  stock: number
  category: string
  active: boolean
  version: number
  created_at: Date
  updated_at: Date
}

function answer(request: Request, json: string, etag: string): Response {
  if (request.headers.get('if-none-match') === etag) {
    return new Response(null, { status: 304, headers: { ETag: etag, 'Cache-Control': CACHE_CONTROL } })
  }
  return new Response(json, { headers: { 'Content-Type': 'application/json', ETag: etag, 'Cache-Control': CACHE_CONTROL } })
}

const notFound = () => new Response(NOT_FOUND_JSON, { status: 404, headers: { 'Content-Type': 'application/json' } })

const app = new Elysia()
  .get('/healthz', () => ({ status: 'ok' }))
  .get('/v1/products/:id', async ({ params: { id }, request }) => {
    if (!UUID.test(id)) return notFound()
    // Any spelling of the id is one entry, as in edgeshop.
    const key = `product:${id.toLowerCase()}`
    const cached = await redis.get(key)
    if (cached !== null) return answer(request, cached, etagOf(cached))

    const [row] = await sql<ProductRow[]>`
      select id, sku, name, description, price_cents, currency, stock, category, active, version, created_at, updated_at
      from products where id = ${id} and active limit 1`
    if (!row) return notFound()
    const json = productJson(row)
    await redis.set(key, json, 'EX', TTL_SECONDS)
    return answer(request, json, `"${row.version}"`)
  })

// A dependency that is down at start is an error now, not reconnect attempts forever.
const startDeadline = setTimeout(() => {
  console.error('elysia peer: Redis or PostgreSQL did not answer within 10 s')
  process.exit(1)
}, 10_000)
await Promise.all([redis.ping(), sql`select 1`])
clearTimeout(startDeadline)
app.listen({ port: Number(PORT), hostname: HOST })
console.log(`elysia peer listening on http://${HOST}:${app.server?.port}`)

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  // In-flight requests finish; connections still busy after 5 s are closed.
  const force = setTimeout(() => app.server?.stop(true), 5000)
  await app.stop()
  clearTimeout(force)
  redis.close()
  await sql.close()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
