import { Redis } from '@upstash/redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clientIp, rateLimitSubject } from '../../src/http/client-ip.ts'
import { createMemoryRateLimiter, createRedisRateLimiter, RateLimiterUnavailableError } from '../../src/infra/ratelimit.ts'
import { expectProblem } from '../contract/helpers.ts'
import { startSilentServer } from '../support/silent-server.ts'
import { createTestApp } from '../support/test-app.ts'

const rule = { name: 't', limit: 3, windowSeconds: 10 }

describe('in-process sliding window', () => {
  it('allows the limit, then refuses until the window slides', async () => {
    let now = 100_000
    const limiter = createMemoryRateLimiter({ now: () => now })
    const results = []
    for (let i = 0; i < 4; i++) results.push(await limiter.limit(rule, 'k'))
    expect(results.map((r) => [r.success, r.remaining])).toEqual([
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ])
    expect(results[3]!.resetMs).toBe(110_000)
    expect((await limiter.limit(rule, 'other')).success).toBe(true)
    // Halfway into the next window, half of the previous window's 3 still count: 1.5 used, so one more fits.
    now = 115_000
    expect((await limiter.limit(rule, 'k')).success).toBe(true)
    expect((await limiter.limit(rule, 'k')).success).toBe(false)
    // Two windows later, the slate is clean.
    now = 130_000
    expect((await limiter.limit(rule, 'k')).remaining).toBe(2)
  })

  it('counts the requests it refuses, by rule', async () => {
    const t = await createTestApp({ env: { RATE_LIMIT_AUTH: '2/60' } })
    try {
      const login = () =>
        t.app.request('/v1/auth/login', {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ email: 'nobody@example.test', password: 'long enough pw' }),
        })
      for (let i = 0; i < 2; i++) expect((await login()).status).toBe(401)
      for (let i = 0; i < 3; i++) await expectProblem(await login(), 429, 'rate_limited')
      expect(t.services.metrics!.render()).toContain('edgeshop_rate_limit_refusals_total{rule="login",reason="limited"} 3\n')
    } finally {
      await t.close()
    }
  })

  it('keeps memory bounded by forgetting the oldest keys', async () => {
    const limiter = createMemoryRateLimiter({ maxKeys: 100 })
    for (let i = 0; i < 1000; i++) await limiter.limit(rule, `ip-${i}`)
    expect((await limiter.limit(rule, 'ip-0')).remaining).toBe(2)
  })
})

describe('Redis limiter failures', () => {
  it('a refused connection is "unavailable"', async () => {
    const redis = new Redis({ url: 'http://127.0.0.1:9', token: 't', retry: { retries: 0 }, enableTelemetry: false })
    const limiter = createRedisRateLimiter({ redis, timeoutMs: 300 })
    await expect(limiter.limit(rule, 'k')).rejects.toBeInstanceOf(RateLimiterUnavailableError)
  })

  describe('a Redis that never answers', () => {
    let silent: Awaited<ReturnType<typeof startSilentServer>>
    let port = 0
    beforeAll(async () => {
      silent = await startSilentServer()
      port = silent.port
    })
    afterAll(() => silent.close())

    it('is "unavailable" after the budget instead of failing open', async () => {
      const redis = new Redis({ url: `http://127.0.0.1:${port}`, token: 't', retry: { retries: 0 }, enableTelemetry: false })
      const limiter = createRedisRateLimiter({ redis, timeoutMs: 200 })
      const started = Date.now()
      await expect(limiter.limit(rule, 'k')).rejects.toBeInstanceOf(RateLimiterUnavailableError)
      expect(Date.now() - started).toBeLessThan(1000)
    })

    it('makes signup, login and refresh fail closed with 503 within the budget', async () => {
      const t = await createTestApp({
        env: { UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${port}`, UPSTASH_REDIS_REST_TOKEN: 't', RATE_LIMIT_TIMEOUT_MS: '200' },
      })
      expect(t.services.limiter.kind).toBe('redis')
      for (const [path, body] of [
        ['/v1/auth/signup', { email: 'a@b.test', password: 'long enough pw', name: 'A' }],
        ['/v1/auth/login', { email: 'a@b.test', password: 'long enough pw' }],
        ['/v1/auth/refresh', { refreshToken: 'whatever' }],
      ] as const) {
        const started = Date.now()
        const res = await t.app.request(path, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        })
        await expectProblem(res, 503, 'service_unavailable')
        expect(Date.now() - started).toBeLessThan(1000)
      }
      const warned = t.logs.filter((l) => l.msg === 'rate limiter unavailable')
      expect(warned.length).toBeGreaterThanOrEqual(1)
      expect(warned.length).toBeLessThanOrEqual(3)
      const scraped = t.services.metrics!.render()
      for (const rule of ['signup', 'login', 'refresh'])
        expect(scraped).toContain(`edgeshop_rate_limit_refusals_total{rule="${rule}",reason="unavailable"} 1\n`)
      await t.close()
    })
  })
})

describe('client address', () => {
  async function appWith(env: Record<string, string>, peer: string) {
    const t = await createTestApp({ env })
    t.setPeer(peer)
    return t
  }
  const ctx = (headers: Record<string, string>) => ({ req: { header: (name: string) => headers[name.toLowerCase()] } }) as never

  it('is the socket peer unless proxies are trusted; a client cannot forge X-Forwarded-For', async () => {
    const t = await appWith({}, '203.0.113.7')
    expect(clientIp(ctx({ 'x-forwarded-for': '1.2.3.4' }), t.services)).toBe('203.0.113.7')
    await t.close()
  })

  it('behind N trusted proxies is the N-th X-Forwarded-For entry from the right', async () => {
    const one = await appWith({ TRUSTED_PROXIES: '1' }, '10.0.0.2')
    expect(clientIp(ctx({ 'x-forwarded-for': 'forged, 198.51.100.9' }), one.services)).toBe('198.51.100.9')
    expect(clientIp(ctx({}), one.services)).toBe('10.0.0.2')
    const two = await appWith({ TRUSTED_PROXIES: '2' }, '10.0.0.3')
    expect(clientIp(ctx({ 'x-forwarded-for': 'forged, 198.51.100.9, 10.0.0.1' }), two.services)).toBe('198.51.100.9')
    expect(clientIp(ctx({ 'x-forwarded-for': '198.51.100.9' }), two.services)).toBe('10.0.0.3')
    await Promise.all([one.close(), two.close()])
  })

  it('counts IPv6 clients by their /64', () => {
    expect(rateLimitSubject('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64')
    expect(rateLimitSubject('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64')
    expect(rateLimitSubject('2001:db8::1')).toBe('2001:db8:0:0::/64')
    expect(rateLimitSubject('::ffff:192.0.2.1')).toBe('192.0.2.1')
    expect(rateLimitSubject('192.0.2.1')).toBe('192.0.2.1')
  })

  it('createServices picks the in-process limiter without Redis', async () => {
    const t = await createTestApp()
    expect(t.services.limiter.kind).toBe('memory')
    await t.close()
  })
})
