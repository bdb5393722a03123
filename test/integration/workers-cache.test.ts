import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AppServer, adminToken, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { createRespClient } from '../support/resp.ts'
import { startUpstashRest, type UpstashRestHandle } from '../support/upstash-rest.ts'

/*
 * The shared cache tier on Workers, in workerd: what a read loads from
 * PostgreSQL is stored in Redis for every isolate. The Redis write follows
 * the answer, and a Worker cuts off what its request left running unless it
 * is handed to waitUntil — before it was, no read ever filled L2 on Workers.
 */

const TOKEN = 'workers-cache-token'
const ADMIN = { email: 'workers-cache@example.test', password: 'workers cache admin password' }
let redis: RedisServerHandle
let rest: UpstashRestHandle
let server: AppServer

beforeAll(async () => {
  redis = await startRedisServer()
  rest = await startUpstashRest({ redisPort: redis.port, token: TOKEN })
  server = await startAppServer('workerd', {
    DATABASE_URL: await migratedDatabase('workers_cache'),
    JWT_SECRET: 'workers-cache-secret-0123456789abcdef0123',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    UPSTASH_REDIS_REST_URL: rest.url,
    UPSTASH_REDIS_REST_TOKEN: TOKEN,
    RATE_LIMIT_AUTH: '1000/60',
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
  })
})
afterAll(async () => {
  await server?.stop()
  await rest?.close()
  await redis?.stop()
})

async function post(path: string, body: unknown, token?: string) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  })
  return (await res.json()) as Record<string, unknown>
}

describe('Workers: the Redis tier', () => {
  it('a product and a page read once are stored in Redis, past the answer', async () => {
    const admin = await adminToken(server.url, ADMIN)
    const id = (await post('/v1/products', { sku: 'WC-1', name: 'Stored', priceCents: 100, stock: 1, category: 'wc' }, admin)).id as string
    const raw = createRespClient({ port: redis.port })
    try {
      // The write's own invalidation leaves a tombstone (`1\n`) in its waitUntil; the read must find it there first.
      await expect.poll(async () => String(await raw.send(['GET', `edgeshop:c:product:${id}`])), { timeout: 10_000 }).toBe('1\n')
      expect((await fetch(`${server.url}/v1/products/${id}`)).status).toBe(200)
      expect((await fetch(`${server.url}/v1/products?category=wc`)).status).toBe(200)
      await expect
        .poll(async () => String(await raw.send(['GET', `edgeshop:c:product:${id}`])), { timeout: 10_000 })
        .toContain('"name":"Stored"')
      await expect
        .poll(async () => ((await raw.send(['KEYS', 'edgeshop:c:products:p:*'])) as unknown[]).length, { timeout: 10_000 })
        .toBe(1)
    } finally {
      await raw.close()
    }
  })
})
