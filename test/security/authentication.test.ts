import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type SessionBody, tokenAttacks } from '../contract/helpers.ts'
import { createHarness, freshIp, type Harness, METRICS_TOKEN, SECURITY_JWT_SECRET } from './harness.ts'
import { loadDocument, type OpenApiDocument, type Operation, operations } from './openapi-model.ts'
import { exampleRequest, expectCode, type Fixtures } from './requests.ts'

/*
 * API2 (broken authentication), OWASP API Security Top 10 (2023): the
 * token-tampering matrix of the accounts contract tests, on every route that
 * takes a bearer token — not only on /v1/me — and the ways a token might be
 * smuggled in besides the Authorization header. Refresh-token reuse, login
 * brute force and enumeration are proven by test/contract/accounts.test.ts
 * on every target; rate limits on every limited route by resources.test.ts.
 */

let h: Harness
let doc: OpenApiDocument
let protectedOps: Operation[]
let customer: SessionBody
let fx: Fixtures

beforeAll(async () => {
  h = await createHarness({ tag: 'authn', redis: false })
  doc = await loadDocument((path) => h.call('GET', path))
  protectedOps = operations(doc).filter((o) => o.access === 'customer' || o.access === 'admin')
  customer = await h.customer()
  const product = await h.product()
  const order = await h.order(customer, [{ productId: product.id, quantity: 1 }])
  const [job] = await h.sql<{ id: string }[]>`select id from jobs limit 1`
  fx = { productId: product.id, orderId: order.id, jobId: job!.id, jobName: 'payment.capture', refreshToken: customer.refreshToken }
})
afterAll(() => h?.close())

const state = () =>
  Promise.all([
    h.sql`select id, status, updated_at from orders order by id`,
    h.sql`select id, stock, version, active from products order by id`,
    h.sql`select count(*)::int as n from users`,
  ])

describe('API2: every protected route refuses every tampered token', () => {
  it('the matrix: 401 unauthorized with WWW-Authenticate on each route, the same answer whatever is wrong, and nothing changes', async () => {
    const attacks = await tokenAttacks(customer.accessToken, SECURITY_JWT_SECRET)
    // Tampering with an admin's token must not keep its role either. (Raising its role to admin changes nothing: left out.)
    const adminAttacks = Object.fromEntries(
      Object.entries(await tokenAttacks(h.adminToken, SECURITY_JWT_SECRET)).filter(([, token]) => token !== h.adminToken),
    )
    const before = await state()
    let requests = 0
    for (const op of protectedOps) {
      const spec = exampleRequest(doc, op, fx)
      for (const [name, token] of [...Object.entries(attacks), ...Object.entries(adminAttacks).map(([n, t]) => [`admin: ${n}`, t])]) {
        const res = await h.call(op.method, spec.path, { token, raw: spec.body, headers: spec.headers })
        const answer = await expectCode(res, 401, 'unauthorized', `${op.id}: ${name}`)
        expect((answer.json as { detail: string }).detail, `${op.id}: ${name}`).toBe(
          'The access token is missing, malformed, expired or not valid here',
        )
        expect(res.headers.get('www-authenticate'), `${op.id}: ${name}`).toBe('Bearer')
        requests++
      }
    }
    expect(await state()).toEqual(before)
    expect(requests).toBe(protectedOps.length * (Object.keys(attacks).length + Object.keys(adminAttacks).length))
    expect(protectedOps.length).toBeGreaterThanOrEqual(13)
  })

  it('the matrix is sound: the untampered tokens pass authentication on every protected route', async () => {
    for (const op of protectedOps) {
      const spec = exampleRequest(doc, op, fx)
      const res = await h.call(op.method, spec.path, { token: h.adminToken, raw: spec.body, headers: spec.headers })
      expect(res.status, `${op.id} with the admin's own token`).not.toBe(401)
    }
  })

  it('a token is only taken from `Authorization: Bearer`: not from the query, a cookie, another scheme or a second header value', async () => {
    const token = customer.accessToken
    for (const op of protectedOps) {
      const spec = exampleRequest(doc, op, fx)
      const variants: Record<string, { path: string; headers: Record<string, string> }> = {
        'access_token in the query': { path: `${spec.path}?access_token=${token}`, headers: {} },
        'token in a cookie': { path: spec.path, headers: { Cookie: `access_token=${token}; token=${token}` } },
        'Basic scheme': { path: spec.path, headers: { Authorization: `Basic ${token}` } },
        'Token scheme': { path: spec.path, headers: { Authorization: `Token ${token}` } },
        'two tokens': { path: spec.path, headers: { Authorization: `Bearer ${token} ${token}` } },
        'empty bearer': { path: spec.path, headers: { Authorization: 'Bearer ' } },
        'X-Access-Token header': { path: spec.path, headers: { 'X-Access-Token': token } },
      }
      for (const [name, v] of Object.entries(variants)) {
        const res = await h.call(op.method, v.path, { raw: spec.body, headers: { ...spec.headers, ...v.headers } })
        await expectCode(res, 401, 'unauthorized', `${op.id}: ${name}`)
      }
    }
  })

  it('the metrics token is compared whole: a prefix, a longer value or another case is 401', async () => {
    for (const token of [
      METRICS_TOKEN.slice(0, -1),
      `${METRICS_TOKEN}x`,
      METRICS_TOKEN.toUpperCase(),
      customer.accessToken,
      h.adminToken,
    ]) {
      await expectCode(await h.call('GET', '/metrics', { token }), 401, 'unauthorized', `metrics token ${token.slice(0, 8)}…`)
    }
    expect((await h.call('GET', '/metrics', { token: METRICS_TOKEN })).status).toBe(200)
  })

  it('a customer cannot become an admin: the role in a signed token comes from the account, not from signup or login bodies', async () => {
    const ip = freshIp()
    for (const body of [
      { email: `role.${Date.now()}@example.test`, password: 'a perfectly fine password', name: 'Mallory', role: 'admin' },
      { email: `role2.${Date.now()}@example.test`, password: 'a perfectly fine password', name: 'Mallory', isAdmin: true },
    ]) {
      await expectCode(await h.call('POST', '/v1/auth/signup', { body, ip }), 400, 'validation_failed', 'signup with a role')
    }
    const login = await h.call('POST', '/v1/auth/login', {
      body: { email: customer.user.email, password: 'a perfectly fine password', role: 'admin' },
      ip,
    })
    await expectCode(login, 400, 'validation_failed', 'login with a role')
    const [{ n }] = (await h.sql`select count(*)::int as n from users where role = 'admin'`) as unknown as [{ n: number }]
    expect(n).toBe(1)
  })
})
