import postgres from 'postgres'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { startUpstashRest, type UpstashRestHandle } from '../support/upstash-rest.ts'

/*
 * An Upstash REST endpoint that accepts requests and never answers, under the
 * app on Bun with PostgreSQL: catalog reads (the cache), logins (the rate
 * limiter) and checkouts (cache invalidations) keep answering within their
 * budgets, and every call the app made to Upstash ends within
 * UPSTASH_TIMEOUT_MS instead of staying open for good.
 */

const TOKEN = 'upstash-silent-token'
const ADMIN = { email: 'upstash-admin@example.test', password: 'upstash admin password' }
const UPSTASH_TIMEOUT_MS = 800
const REQUESTS = 2000

let redis: RedisServerHandle
let rest: UpstashRestHandle
let dbUrl: string
let db: postgres.Sql
let server: AppServer | undefined
const agent = new Agent({ connections: 32, keepAliveTimeout: 30_000 })

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${base}${path}`, {
    method: method as 'GET' | 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.body.text()
  return { status: res.statusCode, json: (text.startsWith('{') ? JSON.parse(text) : {}) as Record<string, unknown> }
}

beforeAll(async () => {
  redis = await startRedisServer()
  rest = await startUpstashRest({ redisPort: redis.port, token: TOKEN })
  dbUrl = await migratedDatabase('upstash_silent')
  db = postgres(dbUrl, { max: 2, onnotice: () => {} })
})

afterAll(async () => {
  await server?.stop()
  await rest?.close()
  await redis?.stop()
  await db?.end()
  await agent.close()
})

describe('an Upstash that accepts and never answers', () => {
  it('reads, logins and checkouts answer within their budgets, and no call to Upstash outlives its bound', async () => {
    const app = await startAppServer('bun', {
      NODE_ENV: 'production',
      DATABASE_URL: dbUrl,
      JWT_SECRET: 'upstash-silent-secret-0123456789abcdef',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      PAYMENT_PROVIDER: 'simulated',
      MAILER: 'recording',
      UPSTASH_REDIS_REST_URL: rest.url,
      UPSTASH_REDIS_REST_TOKEN: TOKEN,
      UPSTASH_TIMEOUT_MS: String(UPSTASH_TIMEOUT_MS),
      // Reads reach Redis often: the in-process copy lives 50 ms.
      CACHE_L1_TTL_MS: '50',
      RATE_LIMIT_AUTH: '100000/60',
      LOG_LEVEL: 'error',
    })
    server = app
    const login = await call(app.url, 'POST', '/v1/auth/login', ADMIN)
    expect(login.status).toBe(200)
    const admin = login.json.accessToken as string
    const buyer = (
      await call(app.url, 'POST', '/v1/auth/signup', { email: 'u@example.test', password: 'upstash buyer password', name: 'U' })
    ).json.accessToken as string
    const products: string[] = []
    for (let i = 0; i < 20; i++) {
      const res = await call(
        app.url,
        'POST',
        '/v1/products',
        { sku: `U-${i}`, name: `Product ${i}`, priceCents: 100, stock: 100_000, category: 'u' },
        { authorization: `Bearer ${admin}` },
      )
      expect(res.status).toBe(201)
      products.push(res.json.id as string)
    }

    rest.silence()
    let mostHeld = 0
    const watch = setInterval(() => {
      mostHeld = Math.max(mostHeld, rest.unanswered())
    }, 20)
    const statuses = { read: new Map<number, number>(), login: new Map<number, number>(), checkout: new Map<number, number>() }
    const slowest = { read: 0, login: 0, checkout: 0 }
    let next = 0
    try {
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          for (let i = next++; i < REQUESTS; i = next++) {
            const kind = i % 4 === 2 ? 'login' : i % 4 === 3 ? 'checkout' : 'read'
            const product = products[i % products.length]!
            const started = performance.now()
            const res =
              kind === 'read'
                ? await call(app.url, 'GET', `/v1/products/${product}`)
                : kind === 'login'
                  ? await call(app.url, 'POST', '/v1/auth/login', { email: 'u@example.test', password: 'upstash buyer password' })
                  : await call(
                      app.url,
                      'POST',
                      '/v1/orders',
                      { items: [{ productId: product, quantity: 1 }] },
                      { authorization: `Bearer ${buyer}`, 'idempotency-key': `u-${i}` },
                    )
            slowest[kind] = Math.max(slowest[kind], performance.now() - started)
            statuses[kind].set(res.status, (statuses[kind].get(res.status) ?? 0) + 1)
          }
        }),
      )
    } finally {
      clearInterval(watch)
    }
    const heldAtEnd = rest.unanswered()
    console.info(
      `silent Upstash: most calls held ${mostHeld}, ${heldAtEnd} at the end of the load; slowest read ${slowest.read.toFixed(0)} ms, login ${slowest.login.toFixed(0)} ms, checkout ${slowest.checkout.toFixed(0)} ms`,
    )
    // The catalog falls back to the database, the limiter fails closed, checkout does not wait for Redis.
    expect(Object.fromEntries(statuses.read)).toEqual({ 200: REQUESTS / 2 })
    expect(Object.fromEntries(statuses.login)).toEqual({ 503: REQUESTS / 4 })
    expect(Object.fromEntries(statuses.checkout)).toEqual({ 201: REQUESTS / 4 })

    // Every call the app made ends within its bound (a cache write's retries within a few more seconds): none is left open.
    const quietAt = Date.now()
    await expect.poll(() => rest.unanswered(), { timeout: 15_000, interval: 100 }).toBe(0)
    console.info(`silent Upstash: every held call closed ${Date.now() - quietAt} ms after the load`)

    // Upstash answers again: logins pass the limiter again and reads find Redis.
    rest.speak()
    await expect.poll(async () => (await call(app.url, 'POST', '/v1/auth/login', ADMIN)).status, { timeout: 10_000 }).toBe(200)

    // With calls held open again, SIGTERM ends within the bound rather than waiting for answers that never come.
    rest.silence()
    await call(
      app.url,
      'POST',
      '/v1/orders',
      { items: [{ productId: products[0], quantity: 1 }] },
      { authorization: `Bearer ${buyer}`, 'idempotency-key': 'u-before-stop' },
    )
    await expect.poll(() => rest.unanswered()).toBeGreaterThan(0)
    const stopAt = Date.now()
    expect(await app.stop()).toBe(0)
    server = undefined
    const stopMs = Date.now() - stopAt
    console.info(`SIGTERM with Upstash calls held: exited in ${stopMs} ms`)
    expect(stopMs).toBeLessThan(UPSTASH_TIMEOUT_MS + 4000)
  }, 180_000)
})
