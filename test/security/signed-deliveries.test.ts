import { createHash } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { forgeJwt, type SessionBody } from '../contract/helpers.ts'
import { type QStashStandIn, startQStash } from '../support/qstash.ts'
import { createHarness, type Harness } from './harness.ts'
import { fill, loadDocument, type Operation, operations } from './openapi-model.ts'
import { expectCode, expectSafeAnswer } from './requests.ts'

/*
 * Signed deliveries: only QStash may call /internal/*. Every internal route
 * of the document gets the whole matrix — no signature, garbage, the wrong
 * key, expired, not yet valid, another issuer, `alg: none`, another body,
 * another host, and each valid signature replayed to every other internal
 * URL — and must answer 401 `invalid_signature` with nothing run. Then the
 * genuine deliveries (current and next key) are accepted, which proves the
 * matrix tested the signature and nothing else. (OWASP API2 for a machine
 * caller, API10 for consuming QStash.) test/integration/qstash-jobs.test.ts
 * proves the same for one route against a real Node server.
 */

const PUBLIC_URL = 'https://shop.example'
const KEYS = { current: 'sig_current_security_suite', next: 'sig_next_security_suite' }

let h: Harness
let qstash: QStashStandIn
let internal: Operation[]
let buyer: SessionBody
/** A payment job that is pending because QStash was unreachable when it was published. */
let captureJob: string
/** Another pending job, for the failure callback. */
let otherJob: string

const sha = (body: string) => createHash('sha256').update(body).digest('base64url')

/** One genuine delivery per internal URL: its path and the body QStash would send there. */
interface Delivery {
  label: string
  path: string
  body: string
}

function deliveriesFor(op: Operation): Delivery[] {
  if (op.path === '/internal/jobs/{name}') {
    return [{ label: op.id, path: fill(op.path, { name: 'payment.capture' }), body: JSON.stringify({ jobId: captureJob }) }]
  }
  if (op.path === '/internal/job-failures') {
    const sourceBody = Buffer.from(JSON.stringify({ jobId: otherJob })).toString('base64')
    return [{ label: op.id, path: op.path, body: JSON.stringify({ sourceBody, status: 500, retried: 3 }) }]
  }
  if (op.path === '/internal/schedules/{schedule}') {
    const names = op.params.find((p) => p.name === 'schedule')!.schema.enum as string[]
    return names.map((schedule) => ({ label: `${op.id} (${schedule})`, path: fill(op.path, { schedule }), body: '' }))
  }
  throw new Error(`no delivery fixture for ${op.id}: add one to deliveriesFor()`)
}

const deliver = (d: { path: string; body: string }, signature: string | undefined) =>
  h.call('POST', d.path, { raw: d.body, headers: signature === undefined ? {} : { 'Upstash-Signature': signature } })

beforeAll(async () => {
  qstash = await startQStash({ token: 'security-qstash-token', currentSigningKey: KEYS.current, nextSigningKey: KEYS.next })
  // QStash is down while the jobs are made: they stay pending in the outbox, and only a delivery can run them.
  await qstash.pause()
  h = await createHarness({
    tag: 'signed',
    redis: false,
    env: {
      QSTASH_URL: qstash.url,
      QSTASH_TOKEN: qstash.token,
      QSTASH_CURRENT_SIGNING_KEY: KEYS.current,
      QSTASH_NEXT_SIGNING_KEY: KEYS.next,
      PUBLIC_URL,
    },
  })
  const doc = await loadDocument((path) => h.call('GET', path))
  internal = operations(doc).filter((o) => o.access === 'signed')
  buyer = await h.customer()
  const product = await h.product()
  const pay = async () => {
    const order = await h.order(buyer, [{ productId: product.id, quantity: 1 }])
    const res = await h.call('POST', `/v1/orders/${order.id}/pay`, {
      token: buyer.accessToken,
      body: { paymentToken: 'tok_ok' },
      headers: { 'Idempotency-Key': `pay-${order.id}` },
    })
    expect(res.status).toBe(202)
    const [job] = await h.sql<{ id: string }[]>`select id from jobs where name = 'payment.capture' and payload->>'orderId' = ${order.id}`
    return job!.id
  }
  captureJob = await pay()
  otherJob = await pay()
})
afterAll(async () => {
  await h?.close()
  await qstash?.close()
})

const sideEffects = async () => ({
  jobs: await h.sql`select id, status, attempts from jobs where id in (${captureJob}, ${otherJob}) order by id`,
  charges: await h.sql`select count(*)::int as n from simulated_charges`,
  scheduleRuns: await h.sql`select count(*)::int as n from schedule_runs`,
})

describe('signed deliveries on every /internal route', () => {
  it('the document lists the internal routes, each guarded by Upstash-Signature', () => {
    expect(internal.map((o) => o.id).sort()).toEqual([
      'POST /internal/job-failures',
      'POST /internal/jobs/{name}',
      'POST /internal/schedules/{schedule}',
    ])
  })

  it('forged, expired, not yet valid, wrong-issuer, other-body, other-host and replayed-to-another-URL signatures: 401 invalid_signature, nothing runs', async () => {
    const deliveries = internal.flatMap(deliveriesFor)
    const before = await sideEffects()
    let attempts = 0
    for (const d of deliveries) {
      const url = `${PUBLIC_URL}${d.path}`
      const now = Math.floor(Date.now() / 1000)
      const claims = { iss: 'Upstash', sub: url, body: sha(d.body), iat: now, nbf: now, exp: now + 300, jti: `jwt_${now}` }
      const cases: Record<string, string | undefined> = {
        missing: undefined,
        empty: '',
        garbage: 'not.a.jwt',
        'wrong key': await qstash.sign({ url, body: d.body, key: 'sig_someone_elses_key' }),
        expired: await qstash.sign({ url, body: d.body, expiresInSeconds: -120 }),
        'not yet valid': await qstash.sign({ url, body: d.body, notBeforeOffsetSeconds: 600 }),
        'other body': await qstash.sign({ url, body: `${d.body} ` }),
        'other host': await qstash.sign({ url: `https://evil.example${d.path}`, body: d.body }),
        'other scheme': await qstash.sign({ url: url.replace('https:', 'http:'), body: d.body }),
        'other issuer': await forgeJwt({ alg: 'HS256', typ: 'JWT' }, { ...claims, iss: 'Mallory' }, KEYS.current),
        'no body claim': await forgeJwt({ alg: 'HS256', typ: 'JWT' }, { ...claims, body: undefined }, KEYS.current),
        'alg none': await forgeJwt({ alg: 'none', typ: 'JWT' }, claims, undefined),
        'HS512 with the key': await forgeJwt({ alg: 'HS512', typ: 'JWT' }, claims, KEYS.current),
      }
      // A genuine signature for every other internal URL, replayed here.
      for (const other of deliveries.filter((o) => o.path !== d.path)) {
        cases[`replayed from ${other.label}`] = await qstash.sign({ url: `${PUBLIC_URL}${other.path}`, body: d.body })
      }
      for (const [name, signature] of Object.entries(cases)) {
        await expectCode(await deliver(d, signature), 401, 'invalid_signature', `${d.label}: ${name}`)
        attempts++
      }
    }
    expect(await sideEffects()).toEqual(before)
    expect(before.jobs.map((j) => j.status)).toEqual(['pending', 'pending'])
    expect(attempts).toBeGreaterThanOrEqual(4 * 15)
  })

  it('a genuine delivery, signed with the current or the next key, is accepted; its replay to the same URL runs nothing twice', async () => {
    const [jobs, failures, schedules] = internal.map(deliveriesFor) as [Delivery[], Delivery[], Delivery[]]
    const job = jobs[0]!
    const first = await deliver(job, await qstash.sign({ url: `${PUBLIC_URL}${job.path}`, body: job.body, key: 'next' }))
    expect((await expectSafeAnswer(first, job.label)).json).toEqual({ status: 'done' })
    const replay = await deliver(job, await qstash.sign({ url: `${PUBLIC_URL}${job.path}`, body: job.body }))
    expect((await expectSafeAnswer(replay, job.label)).json).toEqual({ status: 'already finished' })
    expect((await h.sql`select count(*)::int as n from simulated_charges`)[0]!.n).toBe(1)

    const failure = failures[0]!
    const dead = await deliver(failure, await qstash.sign({ url: `${PUBLIC_URL}${failure.path}`, body: failure.body }))
    expect((await expectSafeAnswer(dead, failure.label)).json).toEqual({ dead: 1 })

    for (const tick of schedules) {
      const res = await deliver(tick, await qstash.sign({ url: `${PUBLIC_URL}${tick.path}`, body: tick.body }))
      expect((await expectSafeAnswer(res, tick.label)).status, tick.label).toBe(200)
    }
  })
})
