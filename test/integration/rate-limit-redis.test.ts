import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { awayFromWindowBoundary, expectProblem } from '../contract/helpers.ts'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'
import { startUpstashRest, type UpstashRestHandle } from '../support/upstash-rest.ts'

/*
 * The Upstash limiter (@upstash/ratelimit) against a real redis-server
 * through the REST stand-in: one allowance shared by every instance, and
 * auth routes failing closed while Redis is gone.
 */

let redis: RedisServerHandle
let rest: UpstashRestHandle
let a: TestApp
let b: TestApp

beforeAll(async () => {
  redis = await startRedisServer()
  rest = await startUpstashRest({ redisPort: redis.port, token: 'limits-token', commandTimeoutMs: 1000 })
  const env = {
    UPSTASH_REDIS_REST_URL: rest.url,
    UPSTASH_REDIS_REST_TOKEN: 'limits-token',
    RATE_LIMIT_AUTH: '4/60',
    RATE_LIMIT_TIMEOUT_MS: '300',
  }
  a = await createTestApp({ env })
  b = await createTestApp({ env })
})
afterAll(async () => {
  await Promise.all([a?.close(), b?.close()])
  await rest?.close()
  await redis?.stop()
})

const login = (t: TestApp, email: string) =>
  t.app.request('/v1/auth/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password: 'not the password' }),
  })

describe('rate limits on Redis', () => {
  it('are one allowance across instances', async () => {
    await awayFromWindowBoundary()
    const email = `shared-${Date.now()}@example.test`
    const statuses = []
    for (let i = 0; i < 4; i++) statuses.push((await login(i % 2 ? a : b, email)).status)
    expect(statuses).toEqual([401, 401, 401, 401])
    const limited = await login(a, email)
    await expectProblem(limited, 429, 'rate_limited')
    expect(limited.headers.get('ratelimit-limit')).toBe('4')
    await expectProblem(await login(b, email), 429, 'rate_limited')
  })

  it('fail closed with 503 while Redis is down, within the budget, and recover when it returns', async () => {
    a.setPeer('198.51.100.2')
    const email = `outage-${Date.now()}@example.test`
    await redis.stop()
    try {
      const started = Date.now()
      await expectProblem(await login(a, email), 503, 'service_unavailable')
      expect(Date.now() - started).toBeLessThan(1000)
      expect((await a.app.request('/healthz')).status).toBe(200)
      const ready = await (await a.app.request('/readyz')).json()
      expect(ready).toMatchObject({ status: 'ready', checks: { db: 'ok', cache: 'unavailable' } })
    } finally {
      await redis.start()
    }
    await expect.poll(async () => (await login(a, email)).status, { timeout: 10_000, interval: 100 }).toBe(401)
  })

  it('fail closed while Redis hangs, answering within the budget', async () => {
    b.setPeer('198.51.100.3')
    redis.pause()
    try {
      const started = Date.now()
      await expectProblem(await login(b, `hang-${Date.now()}@example.test`), 503, 'service_unavailable')
      expect(Date.now() - started).toBeLessThan(1000)
    } finally {
      redis.resume()
    }
  })
})
