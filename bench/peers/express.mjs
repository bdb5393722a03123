/**
 * Benchmark peer: `GET /v1/products/:id` the classic tutorial way — Express 5,
 * `pg` (Pool) and `ioredis`, cache-aside: GET the key from Redis; on a miss
 * SELECT the row, SET it in Redis with a TTL, answer.
 *
 *   PORT=4101 DATABASE_URL=postgres://… REDIS_URL=redis://127.0.0.1:6379 node bench/peers/express.mjs
 *
 * Env: PORT (required), HOST (default 127.0.0.1), DATABASE_URL, REDIS_URL.
 * Prints one line when it listens (Redis and PostgreSQL already answered by
 * then) and nothing per request: no request log at all.
 *
 * Same as edgeshop's answer: status 200, the same body bytes (edgeshop's
 * product JSON: field order, ISO timestamps with milliseconds), `Content-Type:
 * application/json`, `ETag: "<version>"`, edgeshop's `Cache-Control`; a 304
 * when `If-None-Match` matches (Express's own freshness check). Unknown,
 * archived and non-UUID ids are 404. The Redis value is the JSON itself, under
 * `product:<lower-case id>` with edgeshop's L2 TTL (300 s), so a hit is GET + send.
 *
 * Not done here, and done by edgeshop: security headers, request ids, a log
 * line and metrics per request, an in-process L1 cache, versioned cache writes
 * that can never put stale bytes back, single-flight misses, falling back to
 * the database when Redis fails (here a Redis error is a 500), CORS, rate
 * limits, body limits, problem-details errors.
 */
import express from 'express'
import { Redis } from 'ioredis'
import pg from 'pg'
import { CACHE_CONTROL, etagOf, NOT_FOUND, productJson, TTL_SECONDS, UUID } from './product.mjs'

const { PORT, HOST = '127.0.0.1', DATABASE_URL, REDIS_URL } = process.env
if (!PORT || !DATABASE_URL || !REDIS_URL) {
  console.error('express peer: PORT, DATABASE_URL and REDIS_URL are required')
  process.exit(2)
}

const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 10 })
const redis = new Redis(REDIS_URL)
// An idle client that loses its connection must not crash the process; the pool replaces it.
pool.on('error', (err) => console.error(`express peer: idle database client: ${err.message}`))

// `res.setHeader`, not `res.set`/`res.type`: those would add `; charset=utf-8`, and edgeshop sends plain `application/json`.
function send(res, json, etag) {
  res.setHeader('Content-Type', 'application/json')
  res.setHeader('ETag', etag)
  res.setHeader('Cache-Control', CACHE_CONTROL)
  res.send(json)
}

const app = express()
app.disable('x-powered-by')

app.get('/healthz', (_req, res) => {
  res.json({ status: 'ok' })
})

app.get('/v1/products/:id', async (req, res) => {
  const id = req.params.id
  if (!UUID.test(id)) return res.status(404).json(NOT_FOUND)
  // Any spelling of the id is one entry, as in edgeshop.
  const key = `product:${id.toLowerCase()}`
  const cached = await redis.getBuffer(key)
  if (cached) return send(res, cached, etagOf(cached))

  const { rows } = await pool.query(
    'select id, sku, name, description, price_cents, currency, stock, category, active, version, created_at, updated_at from products where id = $1 and active limit 1',
    [id],
  )
  const row = rows[0]
  if (!row) return res.status(404).json(NOT_FOUND)
  const json = productJson(row)
  await redis.set(key, json, 'EX', TTL_SECONDS)
  send(res, Buffer.from(json), `"${row.version}"`)
})

// A dependency that is down at start is an error now, not reconnect attempts forever.
const startDeadline = setTimeout(() => {
  console.error('express peer: Redis or PostgreSQL did not answer within 10 s')
  process.exit(1)
}, 10_000)
await Promise.all([redis.ping(), pool.query('select 1')])
clearTimeout(startDeadline)
const server = app.listen(Number(PORT), HOST, (err) => {
  if (err) {
    console.error(`express peer: ${err.message}`)
    process.exit(1)
  }
  console.log(`express peer listening on http://${HOST}:${server.address().port}`)
})

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  // In-flight requests finish; idle keep-alive connections close now, busy ones after 5 s at most.
  const force = setTimeout(() => server.closeAllConnections(), 5000)
  force.unref()
  await new Promise((resolve) => {
    server.close(resolve)
    server.closeIdleConnections()
  })
  await Promise.allSettled([pool.end(), redis.quit()])
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
