import { describe, expect, inject, it, vi } from 'vitest'
import { CONTRACT_ADMIN } from '../support/contract-setup.ts'
import {
  awayFromWindowBoundary,
  client,
  decodeJwt,
  expectProblem,
  forgeJwt,
  type SessionBody,
  signupCustomer,
  tokenAttacks,
  uniqueEmail,
} from './helpers.ts'

/*
 * Accounts (API.md § Accounts), black-box over HTTP on every target.
 * Happy, error and security cases are grouped as such.
 */

const base = inject('baseUrl')
const secret = inject('jwtSecret')

function expectSession(body: SessionBody, email: string) {
  expect(body.user).toMatchObject({ email, role: 'customer' })
  expect(body.user.id).toMatch(/^[0-9a-f-]{36}$/)
  expect(new Date(body.user.createdAt).toISOString()).toBe(body.user.createdAt)
  expect(body.expiresIn).toBe(900)
  expect(body.accessToken.split('.')).toHaveLength(3)
  expect(body.refreshToken.length).toBeGreaterThanOrEqual(43)
  expect(body.user).not.toHaveProperty('passwordHash')
}

describe('accounts: happy paths', () => {
  it('signup creates a customer and answers 201 with tokens', async () => {
    const c = client(base)
    const email = uniqueEmail('signup')
    const res = await c.post('/v1/auth/signup', { email, password: 'correct horse battery', name: 'Ada Lovelace' })
    expect(res.status).toBe(201)
    expect(res.headers.get('cache-control')).toBe('no-store')
    expect(res.headers.get('ratelimit-limit')).toBe('10')
    const body = (await res.json()) as SessionBody
    expectSession(body, email)
    expect(body.user.name).toBe('Ada Lovelace')
  })

  it('issues an access token with a pinned algorithm, kid, exp, iss, aud, sub and role', async () => {
    const session = await signupCustomer(client(base))
    const { header, payload } = decodeJwt(session.accessToken)
    expect(header).toMatchObject({ alg: 'HS256', typ: 'JWT' })
    expect(typeof header.kid).toBe('string')
    expect(payload).toMatchObject({ iss: 'edgeshop', aud: 'edgeshop-api', sub: session.user.id, role: 'customer' })
    expect((payload.exp as number) - (payload.iat as number)).toBe(900)
  })

  it('logs in with the email in any case, and /v1/me answers the account', async () => {
    const c = client(base)
    const email = uniqueEmail('case')
    await c.post('/v1/auth/signup', { email: email.toUpperCase(), password: 'correct horse battery', name: 'Case' })
    const login = await c.post('/v1/auth/login', {
      email: email.replace(/^./, (ch) => ch.toUpperCase()),
      password: 'correct horse battery',
    })
    expect(login.status).toBe(200)
    const session = (await login.json()) as SessionBody
    expectSession(session, email)
    const me = await c.get('/v1/me', { token: session.accessToken })
    expect(me.status).toBe(200)
    expect(await me.json()).toEqual(session.user)
  })

  it('refresh rotates: a new pair, and the old refresh token stops working', async () => {
    const c = client(base)
    const first = await signupCustomer(c)
    const res = await c.post('/v1/auth/refresh', { refreshToken: first.refreshToken })
    expect(res.status).toBe(200)
    const second = (await res.json()) as SessionBody
    expect(second.refreshToken).not.toBe(first.refreshToken)
    expect((await c.get('/v1/me', { token: second.accessToken })).status).toBe(200)
    const third = await c.post('/v1/auth/refresh', { refreshToken: second.refreshToken })
    expect(third.status).toBe(200)
  })

  it('logout answers 204 and the refresh token no longer works', async () => {
    const c = client(base)
    const s = await signupCustomer(c)
    const out = await c.post('/v1/auth/logout', { refreshToken: s.refreshToken })
    expect(out.status).toBe(204)
    await expectProblem(await c.post('/v1/auth/refresh', { refreshToken: s.refreshToken }), 401, 'unauthorized')
    expect((await c.post('/v1/auth/logout', { refreshToken: 'never-issued-token' })).status).toBe(204)
  })

  it('the configured admin exists and has the admin role', async () => {
    // Workers ensure the admin after their first request; give it a moment.
    const res = await vi.waitFor(
      async () => {
        const res = await client(base).post('/v1/auth/login', CONTRACT_ADMIN)
        expect(res.status).toBe(200)
        return res
      },
      { timeout: 10_000, interval: 250 },
    )
    const body = (await res.json()) as SessionBody
    expect(body.user.role).toBe('admin')
    expect(decodeJwt(body.accessToken).payload.role).toBe('admin')
  })
})

describe('accounts: errors', () => {
  it('409 email_taken for an email that has an account, in any case', async () => {
    const c = client(base)
    const s = await signupCustomer(c)
    const again = await c.post('/v1/auth/signup', { email: s.user.email.toUpperCase(), password: 'another fine password', name: 'Dup' })
    await expectProblem(again, 409, 'email_taken')
  })

  it('400 validation_failed listing every bad field', async () => {
    const res = await client(base).post('/v1/auth/signup', { email: 'not-an-email', password: 'short', name: '' })
    const problem = await expectProblem(res, 400, 'validation_failed')
    expect(problem.errors?.map((e) => e.path).sort()).toEqual(['body.email', 'body.name', 'body.password'])
  })

  it('400 for a password over 128 characters and for a missing body', async () => {
    const c = client(base)
    await expectProblem(
      await c.post('/v1/auth/signup', { email: uniqueEmail(), password: 'x'.repeat(129), name: 'Long' }),
      400,
      'validation_failed',
    )
    await expectProblem(await c.post('/v1/auth/login'), 400, 'validation_failed')
  })

  it('400 invalid_json for a malformed body', async () => {
    const empty = await client(base).call('POST', '/v1/auth/login', { headers: { 'Content-Type': 'application/json' } })
    await expectProblem(empty, 400, 'invalid_json')
    const raw = await fetch(`${base}/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"email":' })
    await expectProblem(raw, 400, 'invalid_json')
  })

  it('401 on /v1/me without a token, with WWW-Authenticate', async () => {
    const res = await client(base).get('/v1/me')
    await expectProblem(res, 401, 'unauthorized')
    expect(res.headers.get('www-authenticate')).toBe('Bearer')
  })

  it('401 unauthorized for a refresh token that was never issued', async () => {
    await expectProblem(await client(base).post('/v1/auth/refresh', { refreshToken: 'x'.repeat(43) }), 401, 'unauthorized')
  })
})

describe('accounts: security', () => {
  it('the role cannot be chosen at signup', async () => {
    const res = await client(base).post('/v1/auth/signup', {
      email: uniqueEmail(),
      password: 'correct horse battery',
      name: 'Mallory',
      role: 'admin',
    })
    const problem = await expectProblem(res, 400, 'validation_failed')
    expect(problem.errors).toEqual([{ path: 'body.role', message: 'is not a known field' }])
  })

  it('an unknown email and a wrong password get the same answer, in similar time', async () => {
    const c = client(base)
    const s = await signupCustomer(c)
    const time = async (email: string) => {
      const started = performance.now()
      const res = await client(base).post('/v1/auth/login', { email, password: 'not the password' })
      return { ms: performance.now() - started, status: res.status, body: (await res.json()) as Record<string, unknown> }
    }
    const wrong: number[] = []
    const unknown: number[] = []
    let a: Awaited<ReturnType<typeof time>> | undefined
    let b: Awaited<ReturnType<typeof time>> | undefined
    for (let i = 0; i < 7; i++) {
      a = await time(s.user.email)
      b = await time(uniqueEmail('nobody'))
      wrong.push(a.ms)
      unknown.push(b.ms)
    }
    expect(a!.status).toBe(401)
    expect(b!.status).toBe(401)
    const strip = ({ requestId: _, ...rest }: Record<string, unknown>) => rest
    expect(strip(a!.body)).toEqual(strip(b!.body))
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!
    // Both pay for one password hash. Without the decoy hash an unknown email answers some 30 times faster (no hash at
    // all); a third leaves room for the noise of a shared, loaded test server while still catching that.
    expect(median(unknown)).toBeGreaterThan(median(wrong) / 3)
  })

  it('token attacks: tampered, unsigned, other algorithms, wrong key, expired, missing exp, wrong aud or iss — all 401, nothing leaks', async () => {
    const c = client(base)
    const s = await signupCustomer(c)
    const { header, payload } = decodeJwt(s.accessToken)
    const cases = await tokenAttacks(s.accessToken, secret)
    // The forging itself is right: the same claims, properly signed, are accepted.
    expect((await c.get('/v1/me', { token: await forgeJwt(header, payload, secret) })).status).toBe(200)
    for (const [name, token] of Object.entries(cases)) {
      const res = await c.get('/v1/me', { token })
      const problem = await expectProblem(res, 401, 'unauthorized')
      expect(problem.detail, name).toBe('The access token is missing, malformed, expired or not valid here')
      expect(res.headers.get('www-authenticate'), name).toBe('Bearer')
    }
    const lower = await c.get('/v1/me', { headers: { Authorization: `bearer ${s.accessToken}` } })
    expect(lower.status).toBe(200)
    await expectProblem(await c.get('/v1/me', { headers: { Authorization: `Basic ${s.accessToken}` } }), 401, 'unauthorized')
  })

  it('a rotated refresh token presented again answers refresh_token_reused and revokes the whole family', async () => {
    const c = client(base)
    const first = await signupCustomer(c)
    const second = (await (await c.post('/v1/auth/refresh', { refreshToken: first.refreshToken })).json()) as SessionBody
    await expectProblem(await c.post('/v1/auth/refresh', { refreshToken: first.refreshToken }), 401, 'refresh_token_reused')
    await expectProblem(await c.post('/v1/auth/refresh', { refreshToken: second.refreshToken }), 401, 'unauthorized')
    // Another login of the same user is another family and is not affected.
    const other = (await (await c.post('/v1/auth/login', { email: first.user.email, password: first.password })).json()) as SessionBody
    expect((await c.post('/v1/auth/refresh', { refreshToken: other.refreshToken })).status).toBe(200)
  })

  it('two concurrent refreshes of one token: exactly one succeeds, the other is treated as reuse', async () => {
    const c = client(base)
    const s = await signupCustomer(c)
    const answers = await Promise.all([0, 1, 2].map(() => client(base).post('/v1/auth/refresh', { refreshToken: s.refreshToken })))
    const statuses = answers.map((r) => r.status).sort()
    expect(statuses).toEqual([200, 401, 401])
    for (const r of answers.filter((x) => x.status === 401))
      expect(((await r.json()) as { code: string }).code).toBe('refresh_token_reused')
  })

  it('rate limits login per email: 429 with Retry-After and RateLimit headers once the allowance is used', async () => {
    const c = client(base)
    const s = await signupCustomer(c)
    await awayFromWindowBoundary()
    let last: Response | undefined
    const remaining: string[] = []
    for (let i = 0; i < 10; i++) {
      last = await client(base).post('/v1/auth/login', { email: s.user.email, password: 'wrong password!' })
      expect(last.status).toBe(401)
      remaining.push(last.headers.get('ratelimit-remaining')!)
    }
    expect(remaining.at(-1)).toBe('0')
    const limited = await client(base).post('/v1/auth/login', { email: s.user.email, password: s.password })
    await expectProblem(limited, 429, 'rate_limited')
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1)
    expect(limited.headers.get('ratelimit-limit')).toBe('10')
    expect(limited.headers.get('ratelimit-remaining')).toBe('0')
    expect(Number(limited.headers.get('ratelimit-reset'))).toBeGreaterThanOrEqual(1)
  })

  it('rate limits per client IP across emails, and other clients are not affected', async () => {
    const c = client(base)
    await awayFromWindowBoundary()
    for (let i = 0; i < 10; i++) {
      const res = await c.post('/v1/auth/login', { email: uniqueEmail('spray'), password: 'guess-number-one' })
      expect(res.status).toBe(401)
    }
    await expectProblem(await c.post('/v1/auth/login', { email: uniqueEmail('spray'), password: 'guess-number-one' }), 429, 'rate_limited')
    expect((await client(base).post('/v1/auth/login', { email: uniqueEmail('other'), password: 'guess-number-one' })).status).toBe(401)
  })
})
