import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Client, QstashError, Receiver, SignatureError } from '@upstash/qstash'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type MessageRecord, type QStashStandIn, startQStash } from '../support/qstash.ts'

const TOKEN = 'qstash-test-token'
const CURRENT = 'sig_current_test_key_5ZB6DVzB1wjE'
const NEXT = 'sig_next_test_key_7kYjw48mhY7k'
// e^(2.5 n) seconds (12 s, 2m28s, 30m8s) become 12 ms, 148 ms, 1.8 s.
const SCALE = 0.001

interface Received {
  path: string
  /** The URL as the destination saw it; what `Receiver.verify({ url })` is given. */
  url: string
  method: string
  headers: IncomingHttpHeaders
  body: string
  at: number
  respondedAt?: number
  /** `true`, or the `Receiver.verify` error. */
  verified: true | string
}

interface Reply {
  status?: number
  body?: string
  headers?: Record<string, string>
  delayMs?: number
}

type Behaviour = (request: Received, index: number) => Reply

interface Destination {
  server: Server
  base: string
  received: Received[]
  behaviours: Map<string, Behaviour>
}

const uid = (): string => randomBytes(6).toString('hex')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')
const jwtPayload = (signature: string): Record<string, unknown> =>
  JSON.parse(Buffer.from(signature.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>

/** An HTTP endpoint on 127.0.0.1 that verifies every delivery with the real Receiver, then answers per path. */
async function startDestination(receiver: Receiver): Promise<Destination> {
  const received: Received[] = []
  const behaviours = new Map<string, Behaviour>()
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', async () => {
      const path = (req.url ?? '/').split('?')[0] ?? '/'
      const body = Buffer.concat(chunks).toString('utf8')
      const url = `${base}${req.url}`
      let verified: true | string
      try {
        verified = (await receiver.verify({ signature: String(req.headers['upstash-signature']), body, url })) || 'verify returned false'
      } catch (err) {
        verified = String(err)
      }
      const request: Received = { path, url, method: req.method ?? '', headers: req.headers, body, at: Date.now(), verified }
      const index = received.filter((r) => r.path === path).length
      received.push(request)
      const reply = behaviours.get(path)?.(request, index) ?? {}
      if (reply.delayMs) await sleep(reply.delayMs)
      request.respondedAt = Date.now()
      res.writeHead(reply.status ?? 200, reply.headers ?? {})
      res.end(reply.body ?? 'ok')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { server, base, received, behaviours }
}

let qstash: QStashStandIn
let client: Client
let receiver: Receiver
let dest: Destination

const hits = (path: string): Received[] => dest.received.filter((r) => r.path === path)
const record = (messageId: string, stand: QStashStandIn = qstash): MessageRecord => {
  const found = stand.messages().find((m) => m.messageId === messageId)
  if (!found) throw new Error(`no record for ${messageId}`)
  return found
}

beforeAll(async () => {
  receiver = new Receiver({ currentSigningKey: CURRENT, nextSigningKey: NEXT })
  dest = await startDestination(receiver)
  qstash = await startQStash({ token: TOKEN, currentSigningKey: CURRENT, nextSigningKey: NEXT, retryDelayScale: SCALE })
  client = new Client({ baseUrl: qstash.url, token: TOKEN })
}, 20_000)

afterAll(async () => {
  await qstash?.close()
  dest?.server.closeAllConnections()
  await new Promise((r) => dest?.server.close(r))
})

// ---------------------------------------------------------------------------
describe('publish and delivery', () => {
  it('delivers the raw body with QStash headers and a signature the real Receiver accepts', async () => {
    const path = `/deliver/${uid()}`
    const url = `${dest.base}${path}?a=1&b=two`
    const body = { hello: 'wörld', n: 1 }
    const res = await client.publishJSON({ url, body, method: 'PUT', headers: { 'X-Custom': 'custom-value' } })
    expect(res.messageId).toMatch(/^msg_\w+$/)
    expect(res.url).toBe(url)
    expect(res.deduplicated).toBeUndefined()
    await qstash.idle()

    const [got] = hits(path)
    expect(hits(path)).toHaveLength(1)
    expect(got?.verified).toBe(true)
    expect(got?.url).toBe(url)
    expect(got?.method).toBe('PUT')
    expect(got?.body).toBe(JSON.stringify(body))
    expect(got?.headers['content-type']).toBe('application/json')
    expect(got?.headers['x-custom']).toBe('custom-value')
    expect(got?.headers['user-agent']).toBe('Upstash-QStash')
    expect(got?.headers['upstash-message-id']).toBe(res.messageId)
    expect(got?.headers['upstash-retried']).toBe('0')
    expect(got?.headers['upstash-caller-ip']).toBe('127.0.0.1')
    // Nothing meant for QStash itself leaks to the destination.
    for (const name of ['authorization', 'upstash-forward-x-custom', 'upstash-method', 'upstash-telemetry-sdk', 'upstash-retries']) {
      expect(got?.headers[name], name).toBeUndefined()
    }

    const claims = jwtPayload(String(got?.headers['upstash-signature']))
    expect(claims.iss).toBe('Upstash')
    expect(claims.sub).toBe(url)
    expect(claims.nbf).toBe(claims.iat)
    expect(Number(claims.exp) - Number(claims.iat)).toBe(300)
    expect(Math.abs(Number(claims.iat) - Date.now() / 1000)).toBeLessThan(10)
    expect(claims.jti).toMatch(/^jwt_\w+$/)
    expect(claims.body).toBe(`${createHash('sha256').update(JSON.stringify(body)).digest('base64url')}=`)

    const rec = record(res.messageId)
    expect(rec).toMatchObject({ kind: 'message', url, method: 'PUT', state: 'delivered', maxRetries: 3, dedupHits: 0 })
    expect(rec.header).toEqual({ 'Content-Type': ['application/json'], 'X-Custom': ['custom-value'] })
    expect(rec.attempts.map((a) => [a.retried, a.status])).toEqual([[0, 200]])
  })

  it('signs with the current key, so only the raw body verifies', async () => {
    const path = `/raw/${uid()}`
    const raw = '{ "b": 1,   "c": "ü" }'
    // publish() does not set a Content-Type; fetch adds its default for a string body.
    await client.publish({ url: `${dest.base}${path}`, body: raw })
    await qstash.idle()
    const [got] = hits(path)
    expect(got?.verified).toBe(true)
    expect(got?.body).toBe(raw)
    expect(got?.headers['content-type']).toBe('text/plain;charset=UTF-8')

    const signature = String(got?.headers['upstash-signature'])
    const onlyCurrent = new Receiver({ currentSigningKey: CURRENT, nextSigningKey: 'sig_unrelated' })
    const onlyNext = new Receiver({ currentSigningKey: 'sig_unrelated', nextSigningKey: NEXT })
    await expect(onlyCurrent.verify({ signature, body: raw, url: got?.url })).resolves.toBe(true)
    await expect(onlyNext.verify({ signature, body: raw, url: got?.url })).rejects.toThrow(SignatureError)
    await expect(receiver.verify({ signature, body: JSON.stringify(JSON.parse(raw)), url: got?.url })).rejects.toThrow(
      /body hash does not match/,
    )
  })

  it('delivers messages concurrently', async () => {
    const slow = `/slow/${uid()}`
    const fast = `/fast/${uid()}`
    dest.behaviours.set(slow, () => ({ delayMs: 600 }))
    await client.publishJSON({ url: `${dest.base}${slow}`, body: 1 })
    await client.publishJSON({ url: `${dest.base}${fast}`, body: 2 })
    await qstash.idle()
    const [s] = hits(slow)
    const [f] = hits(fast)
    expect(f?.at).toBeLessThan(s?.respondedAt ?? 0)
  })

  it('publishes batches', async () => {
    const a = `/batch-a/${uid()}`
    const b = `/batch-b/${uid()}`
    const res = await client.batchJSON([
      { url: `${dest.base}${a}`, body: { i: 1 } },
      { url: `${dest.base}${b}`, body: { i: 2 }, headers: { 'X-Batch': 'yes' } },
    ])
    expect(res).toHaveLength(2)
    expect(res.map((r) => (r as { url: string }).url)).toEqual([`${dest.base}${a}`, `${dest.base}${b}`])
    await qstash.idle()
    expect(hits(a).map((r) => [r.body, r.verified, r.headers['content-type']])).toEqual([['{"i":1}', true, 'application/json']])
    expect(hits(b).map((r) => [r.body, r.verified, r.headers['x-batch']])).toEqual([['{"i":2}', true, 'yes']])
    expect(hits(a)[0]?.headers['upstash-message-id']).toBe(res[0]?.messageId)
  })
})

// ---------------------------------------------------------------------------
describe('signatures (real Receiver)', () => {
  const url = 'http://127.0.0.1:1/hook'
  const body = '{"order":42}'

  it('accepts a signature made with the next key (and only because of it)', async () => {
    const signature = await qstash.sign({ url, body, key: 'next' })
    await expect(receiver.verify({ signature, body, url })).resolves.toBe(true)
    const withoutNext = new Receiver({ currentSigningKey: CURRENT, nextSigningKey: 'sig_unrelated' })
    await expect(withoutNext.verify({ signature, body, url })).rejects.toThrow(SignatureError)
  })

  it('rejects a wrong key, an expired or not-yet-valid token, another URL and another body', async () => {
    const good = await qstash.sign({ url, body })
    await expect(receiver.verify({ signature: good, body, url })).resolves.toBe(true)

    const wrongKey = await qstash.sign({ url, body, key: 'sig_attacker' })
    await expect(receiver.verify({ signature: wrongKey, body, url })).rejects.toThrow(/signature verification failed/)

    const expired = await qstash.sign({ url, body, expiresInSeconds: -5 })
    await expect(receiver.verify({ signature: expired, body, url })).rejects.toThrow(SignatureError)
    // clockTolerance (default 0) is the only slack the Receiver allows.
    await expect(receiver.verify({ signature: expired, body, url, clockTolerance: 30 })).resolves.toBe(true)

    const early = await qstash.sign({ url, body, notBeforeOffsetSeconds: 60 })
    await expect(receiver.verify({ signature: early, body, url })).rejects.toThrow(SignatureError)

    await expect(receiver.verify({ signature: good, body, url: `${url}/other` })).rejects.toThrow(/invalid subject/)
    // Without `url` the subject is not checked at all.
    await expect(receiver.verify({ signature: good, body })).resolves.toBe(true)
    await expect(receiver.verify({ signature: good, body: '{"order":43}', url })).rejects.toThrow(/body hash does not match/)
  })
})

// ---------------------------------------------------------------------------
describe('retries and dead letters', () => {
  it('retries with exponential backoff until a 2xx', async () => {
    const path = `/retry/${uid()}`
    dest.behaviours.set(path, (_r, i) => (i < 2 ? { status: 500, body: 'boom' } : { status: 204, body: '' }))
    const { messageId } = await client.publishJSON({ url: `${dest.base}${path}`, body: { n: 1 }, retries: 3 })
    await qstash.idle()

    const got = hits(path)
    expect(got.map((r) => r.headers['upstash-retried'])).toEqual(['0', '1', '2'])
    expect(got.every((r) => r.headers['upstash-message-id'] === messageId)).toBe(true)
    expect(got.map((r) => r.verified)).toEqual([true, true, true])
    const [first, second, third] = got.map((r) => r.at)
    const gap1 = (second ?? 0) - (first ?? 0)
    const gap2 = (third ?? 0) - (second ?? 0)
    expect(gap1).toBeGreaterThanOrEqual(10) // e^2.5 s * 0.001
    expect(gap1).toBeLessThan(120)
    expect(gap2).toBeGreaterThanOrEqual(140) // e^5 s * 0.001
    expect(gap2).toBeLessThan(800)

    const rec = record(messageId)
    expect(rec.state).toBe('delivered')
    expect(rec.attempts.map((a) => [a.retried, a.status, a.responseBody])).toEqual([
      [0, 500, 'boom'],
      [1, 500, 'boom'],
      [2, 204, ''],
    ])
  })

  it('honours Upstash-Retry-Delay expressions (ms, retried = 0 on the first retry)', async () => {
    const path = `/retry-delay/${uid()}`
    dest.behaviours.set(path, () => ({ status: 500 }))
    // Scaled by retryDelayScale like the default backoff: 100 ms, then 200 ms.
    const { messageId } = await client.publishJSON({
      url: `${dest.base}${path}`,
      body: 1,
      retries: 2,
      retryDelay: '100000 * (1 + retried)',
    })
    await qstash.idle()
    // The waits as scheduled are exact; the observed gaps are at least those, and later by however long the
    // event loop was busy (on a loaded machine, hundreds of milliseconds), so they are not bounded above.
    const rec = record(messageId)
    expect(rec.attempts.map((a) => a.retryDelayMs)).toEqual([100, 200, undefined])
    const [a, b, c] = hits(path).map((r) => r.at)
    expect((b ?? 0) - (a ?? 0)).toBeGreaterThanOrEqual(100)
    expect((c ?? 0) - (b ?? 0)).toBeGreaterThanOrEqual(200)
    expect(rec.state).toBe('failed')
  })

  it('calls Upstash-Callback after every attempt', async () => {
    const path = `/with-callback/${uid()}`
    const cbPath = `/callback/${uid()}`
    dest.behaviours.set(path, (_r, i) => (i === 0 ? { status: 500, body: 'first' } : { status: 200, body: 'done' }))
    const { messageId } = await client.publishJSON({ url: `${dest.base}${path}`, body: 1, callback: `${dest.base}${cbPath}` })
    await qstash.idle()
    const payloads = hits(cbPath)
      .map((r): Record<string, unknown> => ({ verified: r.verified, ...(JSON.parse(r.body) as Record<string, unknown>) }))
      .sort((x, y) => Number(x.retried) - Number(y.retried))
    expect(payloads).toMatchObject([
      { verified: true, status: 500, body: b64('first'), retried: 0, maxRetries: 3, sourceMessageId: messageId },
      { verified: true, status: 200, body: b64('done'), retried: 1, maxRetries: 3, sourceMessageId: messageId },
    ])
    expect(payloads.every((p) => !('dlqId' in p))).toBe(true)
  })

  it('treats retries: 0 as a single attempt', async () => {
    const path = `/once/${uid()}`
    dest.behaviours.set(path, () => ({ status: 500 }))
    const { messageId } = await client.publishJSON({ url: `${dest.base}${path}`, body: 1, retries: 0 })
    await qstash.idle()
    expect(hits(path)).toHaveLength(1)
    expect(record(messageId)).toMatchObject({ state: 'failed', maxRetries: 0 })
  })

  it('dead-letters after the default 3 retries and delivers a verifiable failure callback', async () => {
    const path = `/dead/${uid()}`
    const cbPath = `/failure/${uid()}`
    const url = `${dest.base}${path}`
    const callbackUrl = `${dest.base}${cbPath}`
    dest.behaviours.set(path, () => ({ status: 503, body: 'down for maintenance', headers: { 'X-Reason': 'maintenance' } }))
    dest.behaviours.set(cbPath, (_r, i) => (i === 0 ? { status: 500 } : { status: 200 }))
    const body = { order: 7 }
    const { messageId } = await client.publishJSON({ url, body, failureCallback: callbackUrl, headers: { 'X-Tenant': 't1' } })
    await qstash.idle(10_000)

    expect(hits(path).map((r) => r.headers['upstash-retried'])).toEqual(['0', '1', '2', '3'])
    const rec = record(messageId)
    expect(rec.state).toBe('failed')
    expect(rec.dlqId).toMatch(/^\d+-\d+$/)
    expect(rec.failureCallback).toBe(callbackUrl)

    // The callback is a message of its own: signed for the callback URL and retried.
    const callbacks = hits(cbPath)
    expect(callbacks.map((r) => [r.verified, r.headers['upstash-retried'], r.method])).toEqual([
      [true, '0', 'POST'],
      [true, '1', 'POST'],
    ])
    const [cb] = callbacks
    expect(cb?.headers['content-type']).toBe('application/json')
    await expect(receiver.verify({ signature: String(cb?.headers['upstash-signature']), body: cb?.body ?? '', url })).rejects.toThrow(
      /invalid subject/,
    )
    const payload = JSON.parse(cb?.body ?? '{}') as Record<string, unknown>
    expect(payload).toMatchObject({
      status: 503,
      body: b64('down for maintenance'),
      retried: 3,
      maxRetries: 3,
      dlqId: rec.dlqId,
      sourceMessageId: messageId,
      url,
      method: 'POST',
      sourceBody: b64(JSON.stringify(body)),
      sourceHeader: { 'Content-Type': ['application/json'], 'X-Tenant': ['t1'] },
      createdAt: String(rec.createdAt),
      notBefore: String(rec.notBefore),
      callerIP: '127.0.0.1',
    })
    expect((payload.header as Record<string, string[]>)['X-Reason']).toEqual(['maintenance'])

    const cbRecord = qstash.messages().find((m) => m.sourceMessageId === messageId)
    expect(cbRecord).toMatchObject({ kind: 'failure-callback', url: callbackUrl, state: 'delivered' })
    expect(cbRecord?.attempts.map((a) => a.status)).toEqual([500, 200])
  })

  it('times out slow deliveries and retries them', async () => {
    const stand = await startQStash({
      token: TOKEN,
      currentSigningKey: CURRENT,
      nextSigningKey: NEXT,
      retryDelayScale: SCALE,
      deliveryTimeoutMs: 200,
    })
    try {
      const path = `/timeout/${uid()}`
      dest.behaviours.set(path, (_r, i) => (i === 0 ? { delayMs: 1000 } : {}))
      const c = new Client({ baseUrl: stand.url, token: TOKEN })
      const { messageId } = await c.publishJSON({ url: `${dest.base}${path}`, body: 1 })
      await stand.idle()
      const attempts = record(messageId, stand).attempts
      expect(attempts[0]?.error).toMatch(/timed out after 200 ms/)
      expect(attempts[0]?.status).toBeUndefined()
      expect(attempts[1]?.status).toBe(200)
      expect(hits(path).map((r) => r.headers['upstash-retried'])).toEqual(['0', '1'])
    } finally {
      await stand.close()
    }
  })
})

// ---------------------------------------------------------------------------
describe('deduplication', () => {
  it('does not enqueue the same deduplication id twice and answers with the original message id', async () => {
    const path = `/dedup/${uid()}`
    const url = `${dest.base}${path}`
    const deduplicationId = `order-${uid()}`
    const first = await client.publishJSON({ url, body: { v: 1 }, deduplicationId })
    const second = await client.publishJSON({ url, body: { v: 2 }, deduplicationId })
    expect(first.deduplicated).toBeUndefined()
    expect(second).toEqual({ messageId: first.messageId, url, deduplicated: true })

    // Same id, other destination: a different message.
    const elsewhere = await client.publishJSON({ url: `${url}-other`, body: { v: 3 }, deduplicationId })
    expect(elsewhere.messageId).not.toBe(first.messageId)

    // The client hides the status; QStash answers a duplicate with 202.
    const raw = await fetch(`${qstash.url}/v2/publish/${url}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'upstash-deduplication-id': deduplicationId },
      body: 'x',
    })
    expect(raw.status).toBe(202)
    expect(await raw.json()).toEqual({ messageId: first.messageId, url, deduplicated: true })

    await qstash.idle()
    expect(hits(path).map((r) => r.body)).toEqual(['{"v":1}'])
    expect(record(first.messageId).dedupHits).toBe(2)
  })

  it('deduplicates on content when asked', async () => {
    const path = `/content/${uid()}`
    const url = `${dest.base}${path}`
    const a = await client.publishJSON({ url, body: { same: true }, contentBasedDeduplication: true })
    const b = await client.publishJSON({ url, body: { same: true }, contentBasedDeduplication: true })
    const c = await client.publishJSON({ url, body: { same: false }, contentBasedDeduplication: true })
    const d = await client.publishJSON({ url, body: { same: true }, contentBasedDeduplication: true, headers: { 'X-V': '2' } })
    expect(b).toMatchObject({ messageId: a.messageId, deduplicated: true })
    expect(c.deduplicated).toBeUndefined()
    expect(d.deduplicated).toBeUndefined()
    await qstash.idle()
    expect(hits(path)).toHaveLength(3)
  })

  it('forgets deduplication ids after the window', async () => {
    const stand = await startQStash({ token: TOKEN, currentSigningKey: CURRENT, nextSigningKey: NEXT, deduplicationWindowMs: 150 })
    try {
      const c = new Client({ baseUrl: stand.url, token: TOKEN })
      const url = `${dest.base}/window/${uid()}`
      const first = await c.publishJSON({ url, body: 1, deduplicationId: 'w' })
      expect((await c.publishJSON({ url, body: 1, deduplicationId: 'w' })).deduplicated).toBe(true)
      await sleep(250)
      const later = await c.publishJSON({ url, body: 1, deduplicationId: 'w' })
      expect(later.deduplicated).toBeUndefined()
      expect(later.messageId).not.toBe(first.messageId)
      await stand.idle()
    } finally {
      await stand.close()
    }
  })
})

// ---------------------------------------------------------------------------
describe('delay and not-before', () => {
  it('holds a delayed message, visible through messages.get while pending', async () => {
    const path = `/delay/${uid()}`
    const t0 = Date.now()
    const { messageId } = await client.publishJSON({ url: `${dest.base}${path}`, body: 1, delay: 1 })
    const pendingMessage = await client.messages.get(messageId)
    expect(pendingMessage).toMatchObject({ messageId, url: `${dest.base}${path}`, method: 'POST', maxRetries: 3 })
    expect(pendingMessage.notBefore).toBeGreaterThanOrEqual(t0 + 1000)
    await sleep(500)
    expect(hits(path)).toHaveLength(0)
    await qstash.idle()
    const at = hits(path)[0]?.at ?? 0
    expect(at - t0).toBeGreaterThanOrEqual(1000)
    expect(at - t0).toBeLessThan(2500)
    // Delivered messages are gone from the messages API.
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      await expect(client.messages.get(messageId)).rejects.toMatchObject({ status: 404 })
    } finally {
      errors.mockRestore()
    }
  })

  it('delivers at Upstash-Not-Before (unix seconds)', async () => {
    const path = `/not-before/${uid()}`
    const notBefore = Math.floor(Date.now() / 1000) + 2
    const { messageId } = await client.publishJSON({ url: `${dest.base}${path}`, body: 1, notBefore })
    expect(record(messageId).notBefore).toBe(notBefore * 1000)
    await qstash.idle()
    const at = hits(path)[0]?.at ?? 0
    expect(at).toBeGreaterThanOrEqual(notBefore * 1000)
    expect(at).toBeLessThan(notBefore * 1000 + 1500)
  })

  it('idle() gives up after its timeout', async () => {
    const stand = await startQStash({ token: TOKEN, currentSigningKey: CURRENT, nextSigningKey: NEXT })
    try {
      const c = new Client({ baseUrl: stand.url, token: TOKEN })
      await c.publishJSON({ url: `${dest.base}/later/${uid()}`, body: 1, delay: 60 })
      await expect(stand.idle(200)).rejects.toThrow(/1 message\(s\) still pending after 200 ms/)
    } finally {
      await stand.close()
    }
  })
})

// ---------------------------------------------------------------------------
describe('outage and auth', () => {
  it('answers 503 while paused (QstashError), holds deliveries, and sends them after resume', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      const path = `/held/${uid()}`
      const { messageId } = await client.publishJSON({ url: `${dest.base}${path}`, body: { held: true }, delay: 1 })
      await qstash.pause()
      const err = await client.publishJSON({ url: `${dest.base}${path}`, body: 2 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(QstashError)
      expect(err).toMatchObject({ status: 503, message: '{"error":"Service Unavailable"}' })
      expect(errors).toHaveBeenCalledWith(expect.stringMatching(/failed with status 503/))

      await sleep(1500)
      expect(hits(path)).toHaveLength(0)
      expect(record(messageId).state).toBe('pending')

      await qstash.resume()
      await qstash.idle()
      expect(hits(path).map((r) => [r.body, r.verified])).toEqual([['{"held":true}', true]])
      await expect(client.publishJSON({ url: `${dest.base}${path}`, body: 3 })).resolves.toHaveProperty('messageId')
      await qstash.idle()
    } finally {
      await qstash.resume()
      errors.mockRestore()
    }
  })

  it('refuses connections in refuse mode (TypeError: fetch failed) and listens on the same port after resume', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    const warnings = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const url = `${dest.base}/refused/${uid()}`
    await qstash.pause({ mode: 'refuse' })
    try {
      const noRetry = new Client({ baseUrl: qstash.url, token: TOKEN, retry: false })
      const err = await noRetry.publishJSON({ url, body: 1 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect(err).toMatchObject({ message: 'fetch failed' })
      // fetch's shared pool may still hold a keep-alive socket the outage cut ("other side closed").
      expect(['ECONNREFUSED', 'UND_ERR_SOCKET']).toContain((err as { cause?: { code?: string } }).cause?.code)

      // Network errors (unlike HTTP errors) are retried by the client before it throws.
      const retrying = new Client({ baseUrl: qstash.url, token: TOKEN, retry: { retries: 2, backoff: () => 100 } })
      const t0 = Date.now()
      const refused = await retrying.publishJSON({ url, body: 1 }).catch((e: unknown) => e)
      expect(Date.now() - t0).toBeGreaterThanOrEqual(200)
      expect(refused).toMatchObject({ message: 'fetch failed', cause: { code: 'ECONNREFUSED' } })
      expect(warnings).toHaveBeenCalledTimes(2)
    } finally {
      await qstash.resume()
      errors.mockRestore()
      warnings.mockRestore()
    }
    const { messageId } = await client.publishJSON({ url, body: 1 })
    await qstash.idle()
    expect(record(messageId).state).toBe('delivered')
    expect(hits(new URL(url).pathname)).toHaveLength(1)
  })

  it('answers 401 for a wrong or missing token', async () => {
    const before = qstash.messages().length
    const wrong = new Client({ baseUrl: qstash.url, token: 'not-the-token' })
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      const err = await wrong.publishJSON({ url: `${dest.base}/never`, body: 1 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(QstashError)
      expect(err).toMatchObject({ status: 401, message: '{"error":"Unauthorized"}' })
    } finally {
      errors.mockRestore()
    }
    const raw = await fetch(`${qstash.url}/v2/publish/${dest.base}/never`, { method: 'POST', body: 'x' })
    expect(raw.status).toBe(401)
    expect(await raw.json()).toEqual({ error: 'Unauthorized' })
    expect(qstash.messages()).toHaveLength(before)
  })

  it('rejects destinations that are not URLs', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {})
    try {
      await expect(client.publishJSON({ urlGroup: 'my-group', body: 1 })).rejects.toMatchObject({ status: 400 })
      await expect(client.publishJSON({ url: `${dest.base}/x`, body: 1, delay: '5x' as '5s' })).rejects.toMatchObject({ status: 400 })
    } finally {
      errors.mockRestore()
    }
  })
})
