import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import type { AppEnv } from '../../src/http/context.ts'
import { readYourWrites, WRITTEN_AT_COOKIE, WRITTEN_AT_HEADER } from '../../src/http/read-your-writes.ts'

/* The write time a client carries from a write to its next reads (the replica routing is tested against a real standby). */

function app(opts = { maxLagMs: 2000, secureCookie: false }) {
  const a = new Hono<AppEnv>()
  a.use(readYourWrites(opts))
  a.get('/seen', (c) => c.json({ writtenAt: c.get('writtenAt') ?? null }))
  a.post('/write', (c) => c.json({ ok: true }, 201))
  a.post('/refused', (c) => c.json({ ok: false }, 409))
  return a
}

const seen = async (headers: Record<string, string>) =>
  ((await (await app().request('/seen', { headers })).json()) as { writtenAt: number | null }).writtenAt

describe('readYourWrites()', () => {
  it('marks the answer of a write with its time, as a header and a short-lived cookie', async () => {
    const before = Date.now()
    const res = await app().request('/write', { method: 'POST' })
    const at = Number(res.headers.get(WRITTEN_AT_HEADER))
    expect(at).toBeGreaterThanOrEqual(before)
    expect(at).toBeLessThanOrEqual(Date.now())
    expect(res.headers.get('set-cookie')).toBe(`${WRITTEN_AT_COOKIE}=${at}; Max-Age=3; Path=/; HttpOnly; SameSite=Lax`)
    const secure = await app({ maxLagMs: 2000, secureCookie: true }).request('/write', { method: 'POST' })
    expect(secure.headers.get('set-cookie')).toMatch(/; Secure$/)
  })

  it('leaves reads and refused writes unmarked', async () => {
    expect((await app().request('/seen')).headers.get(WRITTEN_AT_HEADER)).toBeNull()
    const refused = await app().request('/refused', { method: 'POST' })
    expect(refused.headers.get(WRITTEN_AT_HEADER)).toBeNull()
    expect(refused.headers.get('set-cookie')).toBeNull()
  })

  it('reads the time back from the header or the cookie; a future one counts as now, an old or bad one as none', async () => {
    const recent = Date.now() - 500
    expect(await seen({ [WRITTEN_AT_HEADER]: String(recent) })).toBe(recent)
    expect(await seen({ cookie: `a=b; ${WRITTEN_AT_COOKIE}=${recent}; c=d` })).toBe(recent)
    const future = await seen({ cookie: `${WRITTEN_AT_COOKIE}=${Date.now() + 3_600_000}` })
    expect(future).toBeLessThanOrEqual(Date.now())
    expect(future).toBeGreaterThan(Date.now() - 1000)
    expect(await seen({ [WRITTEN_AT_HEADER]: String(Date.now() - 10_000) })).toBeNull()
    expect(await seen({ [WRITTEN_AT_HEADER]: 'yesterday' })).toBeNull()
    expect(await seen({ cookie: `x${WRITTEN_AT_COOKIE}=${recent}` })).toBeNull()
    expect(await seen({})).toBeNull()
  })
})
