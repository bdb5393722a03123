/**
 * Catalog read latency by cache tier, and by catalog size:
 *
 *   ./run node bench/catalog.ts [--big 1000000] [--rounds 300]
 *
 * Starts PostgreSQL, redis-server with the Upstash REST stand-in, and
 * edgeshop on Bun and on Node, seeds the catalog with `./run seed`, then
 * times sequential requests (one at a time: latency, not throughput) over
 * loopback:
 *
 *   tiers  L1 hit (default settings), L2 hit (CACHE_L1_MAX_ENTRIES=0 with
 *          Redis), miss (no cache at all: every read is a query)
 *   scale  page 1, a page half-way through the catalog, a category page, a
 *          rare search and a get by id, with caching off, at 1,000 products and
 *          at --big products
 */

import { spawnSync } from 'node:child_process'
import postgres from 'postgres'
import { encodeCursor } from '../src/core/page.ts'
import { ROOT, type Runtime, startAppServer } from '../test/support/app-server.ts'
import { startPostgres } from '../test/support/postgres.ts'
import { startRedisServer } from '../test/support/redis-server.ts'
import { createMigratedDatabase } from '../test/support/services.ts'
import { startUpstashRest } from '../test/support/upstash-rest.ts'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const big = arg('big', 1_000_000)
const rounds = arg('rounds', 300)
const secret = 'bench-catalog-secret-0123456789abcdef01'

const pg = await startPostgres()
const redis = await startRedisServer()
const rest = await startUpstashRest({ redisPort: redis.port, token: 'bench-token' })

function seed(url: string, products: number) {
  const started = Date.now()
  const res = spawnSync(process.env.BUN_BIN ?? 'bun', ['scripts/seed.ts', '--products', String(products)], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  if (res.status !== 0) throw new Error(`seed failed: ${res.stdout}`)
  console.error(`seeded ${products} products in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

async function time(url: string, paths: string[]): Promise<{ median: number; p99: number }> {
  for (const p of paths.slice(0, 20)) await (await fetch(url + p)).arrayBuffer()
  const samples: number[] = []
  for (let i = 0; i < rounds; i++) {
    const path = paths[i % paths.length]!
    const started = performance.now()
    const res = await fetch(url + path)
    await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`${path} answered ${res.status}`)
    samples.push(performance.now() - started)
  }
  samples.sort((a, b) => a - b)
  return { median: samples[Math.floor(samples.length / 2)]!, p99: samples[Math.floor(samples.length * 0.99)]! }
}

const fmt = (t: { median: number; p99: number }) => `${t.median.toFixed(2)} / ${t.p99.toFixed(2)}`

async function sample(url: string, n: number) {
  const sql = postgres(url, { max: 1 })
  const ids = (await sql`select id from products where active order by random() limit ${n}`).map((r) => r.id as string)
  const [mid] =
    await sql`select id from products where active order by id desc offset ${Math.floor((await sql`select count(*)::int as n from products`)[0]!.n / 2)} limit 1`
  await sql.end()
  return { ids, middle: encodeCursor(mid!.id as string) }
}

const results: string[] = []

// Tiers
const small = await createMigratedDatabase(pg, 'bench_tiers')
seed(small, 1000)
const { ids } = await sample(small, 200)
const one = [`/v1/products/${ids[0]}`]
const base = { DATABASE_URL: small, JWT_SECRET: secret, NODE_ENV: 'production', LOG_LEVEL: 'warn' }
const redisEnv = { UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: 'bench-token' }
results.push('', `### Latency of GET /v1/products/{id} by tier (ms, median / p99 of ${rounds} sequential requests)`, '')
results.push('| runtime | L1 hit | L2 hit (Redis via REST) | miss (PostgreSQL) |', '|---|---|---|---|')
for (const runtime of ['bun', 'node'] as Runtime[]) {
  const row: string[] = []
  for (const env of [
    { ...base, ...redisEnv },
    { ...base, ...redisEnv, CACHE_L1_MAX_ENTRIES: '0' },
    { ...base, CACHE_L1_MAX_ENTRIES: '0' },
  ]) {
    const server = await startAppServer(runtime, env)
    try {
      row.push(fmt(await time(server.url, one)))
    } finally {
      await server.stop()
    }
  }
  results.push(`| ${runtime} | ${row.join(' | ')} |`)
}

// Scale
const large = await createMigratedDatabase(pg, 'bench_large')
seed(large, big)
results.push('', `### Cost of a read by catalog size, caching off (ms, median / p99 of ${rounds} sequential requests, Bun)`, '')
results.push(`| read | 1,000 products | ${big.toLocaleString('en')} products | ratio (median) |`, '|---|---|---|---|')
const scale: Record<string, [string, string]> = {}
const medians: Record<string, number[]> = {}
for (const url of [small, large]) {
  const s = await sample(url, 200)
  const server = await startAppServer('bun', { ...base, DATABASE_URL: url, CACHE_L1_MAX_ENTRIES: '0' })
  try {
    const reads: Record<string, string[]> = {
      'page 1 (20 newest)': ['/v1/products'],
      'a page half-way through': [`/v1/products?cursor=${s.middle}`],
      'page 1 of a category': ['/v1/products?category=kitchen'],
      'search, rare term': ['/v1/products?q=DEMO-0000999'],
      'get by id (random ids)': s.ids.map((id) => `/v1/products/${id}`),
    }
    for (const [name, paths] of Object.entries(reads)) {
      const t = await time(server.url, paths)
      ;(scale[name] ??= ['', ''])[url === small ? 0 : 1] = fmt(t)
      ;(medians[name] ??= []).push(t.median)
    }
  } finally {
    await server.stop()
  }
}
for (const [name, [a, b]] of Object.entries(scale)) {
  const [m1, m2] = medians[name]!
  results.push(`| ${name} | ${a} | ${b} | ${(m2! / m1!).toFixed(2)}× |`)
}

await rest.close()
await redis.stop()
await pg.stop()
console.log(results.join('\n'))
