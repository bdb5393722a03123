/**
 * Benchmark peer: `GET /v1/products/:id` the usual Fastify way — Fastify 5,
 * `ioredis` and `pg` (Pool) for misses, cache-aside: GET the key from Redis;
 * on a miss SELECT the row, SET it in Redis with a TTL, answer.
 *
 *   PORT=4102 DATABASE_URL=postgres://… REDIS_URL=redis://127.0.0.1:6379 node bench/peers/fastify.mjs
 *
 * Env: PORT (required), HOST (default 127.0.0.1), DATABASE_URL, REDIS_URL.
 * Prints one line when it listens (Redis and PostgreSQL already answered by
 * then) and nothing per request: Fastify's logger stays off (its default).
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
 * limits, body limits, problem-details errors. No route schemas: the answer
 * is bytes already serialised, so there is nothing for Fastify to serialise.
 */
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import pg from 'pg'
import { CACHE_CONTROL, etagOf, NOT_FOUND, productJson, TTL_SECONDS, UUID } from './product.mjs'

const { PORT, HOST = '127.0.0.1', DATABASE_URL, REDIS_URL } = process.env
if (!PORT || !DATABASE_URL || !REDIS_URL) {
  console.error('fastify peer: PORT, DATABASE_URL and REDIS_URL are required')
  process.exit(2)
}

const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10 })
const redis = new Redis(REDIS_URL)
// An idle client that loses its connection must not crash the process; the pool replaces it.
pool.on('error', (err) => console.error(`fastify peer: idle database client: ${err.message}`))

// A Buffer, not a string: with a string Fastify adds `; charset=utf-8`, and edgeshop sends plain `application/json`.
function send(request, reply, json, etag) {
  reply.header('cache-control', CACHE_CONTROL).header('etag', etag)
  if (request.headers['if-none-match'] === etag) return reply.code(304).send()
  return reply.header('content-type', 'application/json').send(json)
}

const app = Fastify()

app.get('/healthz', async () => ({ status: 'ok' }))

app.get('/v1/products/:id', async (request, reply) => {
  const { id } = request.params
  if (!UUID.test(id)) return reply.code(404).send(NOT_FOUND)
  // Any spelling of the id is one entry, as in edgeshop.
  const key = `product:${id.toLowerCase()}`
  const cached = await redis.getBuffer(key)
  if (cached) return send(request, reply, cached, etagOf(cached))

  const { rows } = await pool.query(
    'select id, sku, name, description, price_cents, currency, stock, category, active, version, created_at, updated_at from products where id = $1 and active limit 1',
    [id],
  )
  const row = rows[0]
  if (!row) return reply.code(404).send(NOT_FOUND)
  const json = productJson(row)
  await redis.set(key, json, 'EX', TTL_SECONDS)
  return send(request, reply, Buffer.from(json), `"${row.version}"`)
})

app.addHook('onClose', async () => {
  await Promise.allSettled([pool.end(), redis.quit()])
})

// A dependency that is down at start is an error now, not reconnect attempts forever.
const startDeadline = setTimeout(() => {
  console.error('fastify peer: Redis or PostgreSQL did not answer within 10 s')
  process.exit(1)
}, 10_000)
await Promise.all([redis.ping(), pool.query('select 1')])
clearTimeout(startDeadline)
try {
  await app.listen({ port: Number(PORT), host: HOST })
} catch (err) {
  console.error(`fastify peer: ${err.message}`)
  process.exit(1)
}
console.log(`fastify peer listening on http://${HOST}:${app.server.address().port}`)

// close() lets in-flight requests finish and closes idle keep-alive connections (forceCloseConnections: 'idle').
process.once('SIGTERM', () => app.close())
process.once('SIGINT', () => app.close())
