import { expect, vi } from 'vitest'

export interface ProblemBody {
  type: string
  title: string
  status: number
  detail?: string
  code: string
  requestId: string
  errors?: { path: string; message: string }[]
}

/** Asserts an RFC 9457 answer with this status and code, and returns its body. */
export async function expectProblem(res: Response, status: number, code: string): Promise<ProblemBody> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  const body = JSON.parse(text) as ProblemBody
  expect(body.code).toBe(code)
  expect(body.status).toBe(status)
  expect(typeof body.title).toBe('string')
  expect(body.type).toBe(`/docs#error-${code}`)
  expect(body.requestId).toBe(res.headers.get('x-request-id'))
  expect(text).not.toMatch(/\bat .+\(.+:\d+:\d+\)|node_modules|postgres(ql)?:\/\//)
  return body
}

/**
 * One API client with its own network identity: a distinct client address,
 * sent the way each target learns it (X-Forwarded-For behind the trusted
 * proxy on Bun and Node, CF-Connecting-IP on Workers).
 */
export function client(base: string) {
  const octet = () => Math.floor(Math.random() * 254) + 1
  const address = `10.${octet()}.${octet()}.${octet()}`
  const call = async (method: string, path: string, opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {}) => {
    const headers: Record<string, string> = { 'X-Forwarded-For': address, 'CF-Connecting-IP': address, ...opts.headers }
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json'
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`
    return fetch(`${base}${path}`, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body) })
  }
  return {
    address,
    get: (path: string, opts?: { token?: string; headers?: Record<string, string> }) => call('GET', path, opts),
    post: (path: string, body?: unknown, opts?: { token?: string; headers?: Record<string, string> }) =>
      call('POST', path, { ...opts, body }),
    call,
  }
}

/** A unique, valid email for one test. */
export const uniqueEmail = (tag = 'user') => `${tag}.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}@example.test`

export interface SessionBody {
  user: { id: string; email: string; name: string; role: string; createdAt: string }
  accessToken: string
  refreshToken: string
  expiresIn: number
}

/** Signs up a fresh customer and returns its session. */
export async function signupCustomer(c: ReturnType<typeof client>, tag = 'customer'): Promise<SessionBody & { password: string }> {
  const password = 'a perfectly fine password'
  const res = await c.post('/v1/auth/signup', { email: uniqueEmail(tag), password, name: `Test ${tag}` })
  if (res.status !== 201) throw new Error(`signup failed: ${res.status} ${await res.text()}`)
  return { ...((await res.json()) as SessionBody), password }
}

const b64url = (data: string | Uint8Array) => Buffer.from(data).toString('base64url')

/** Signs arbitrary JWT parts with HMAC-SHA256 (or leaves the signature empty), to forge and tamper with tokens. */
export async function forgeJwt(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  secret: string | undefined,
): Promise<string> {
  const unsigned = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`
  if (secret === undefined) return `${unsigned}.`
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign'])
  const sig = new Uint8Array(await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(unsigned)))
  return `${unsigned}.${b64url(sig)}`
}

/** The header and claims of a JWT, without checking anything. */
export function decodeJwt(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = token.split('.') as [string, string]
  return { header: JSON.parse(Buffer.from(h, 'base64url').toString()), payload: JSON.parse(Buffer.from(p, 'base64url').toString()) }
}

/**
 * The token-tampering matrix: every way to bend a valid access token that
 * must be refused with 401. Each entry is made from `accessToken` (a real
 * customer's) and the target's signing `secret`, so only the named property is
 * wrong. Used by the accounts contract tests on `/v1/me` and by the security
 * suite on every protected route.
 */
export async function tokenAttacks(accessToken: string, secret: string): Promise<Record<string, string>> {
  const { header, payload } = decodeJwt(accessToken)
  const now = Math.floor(Date.now() / 1000)
  const [h, p, sig] = accessToken.split('.') as [string, string, string]
  const elevated = Buffer.from(JSON.stringify({ ...payload, role: 'admin' })).toString('base64url')
  const { exp: _, ...noExp } = payload
  return {
    'changed payload, old signature': `${h}.${elevated}.${sig}`,
    'alg none, no signature': await forgeJwt({ alg: 'none', typ: 'JWT' }, { ...payload, role: 'admin' }, undefined),
    'alg none with a signature': `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid: header.kid })).toString('base64url')}.${p}.${sig}`,
    'algorithm switch to HS512': await forgeJwt({ ...header, alg: 'HS512' }, payload, secret),
    'algorithm switch to RS256': await forgeJwt({ ...header, alg: 'RS256' }, payload, secret),
    'wrong key': await forgeJwt(header, payload, 'some-other-secret-0123456789abcdef01234'),
    'unknown kid': await forgeJwt({ ...header, kid: 'deadbeefdeadbeef' }, payload, secret),
    'no kid': await forgeJwt({ alg: 'HS256', typ: 'JWT' }, payload, secret),
    expired: await forgeJwt(header, { ...payload, iat: now - 3600, exp: now - 60 }, secret),
    'missing exp': await forgeJwt(header, noExp, secret),
    'wrong aud': await forgeJwt(header, { ...payload, aud: 'another-api' }, secret),
    'wrong iss': await forgeJwt(header, { ...payload, iss: 'https://evil.example' }, secret),
    'issued in the future': await forgeJwt(header, { ...payload, iat: now + 3600, exp: now + 7200 }, secret),
    'sub not a uuid': await forgeJwt(header, { ...payload, sub: "1' OR '1'='1" }, secret),
    'unknown role': await forgeJwt(header, { ...payload, role: 'superuser' }, secret),
    garbage: 'not.a.jwt',
    'two parts': `${h}.${p}`,
  }
}

/**
 * Waits until the current rate-limit window has at least `marginMs` left.
 * Windows are aligned to the epoch; a sliding window weights the previous
 * window by how much of it still overlaps, so a burst that straddles a
 * boundary may get one more request through than the limit.
 */
export async function awayFromWindowBoundary(windowSeconds = 60, marginMs = 4000): Promise<void> {
  const windowMs = windowSeconds * 1000
  const left = windowMs - (Date.now() % windowMs)
  if (left < marginMs) await new Promise((r) => setTimeout(r, left + 50))
}

/** Logs in as the configured admin. Workers create it after their first request, so this waits a little for it. */
export async function loginAdmin(base: string, admin: { email: string; password: string }): Promise<string> {
  const res = await vi.waitFor(
    async () => {
      const res = await client(base).post('/v1/auth/login', admin)
      if (res.status !== 200) throw new Error(`admin login failed: ${res.status} ${await res.text()}`)
      return res
    },
    { timeout: 10_000, interval: 250 },
  )
  return ((await res.json()) as SessionBody).accessToken
}

/** One server-sent event as a client parses it. */
export interface SseEvent {
  id: string | undefined
  event: string | undefined
  data: string
}

/**
 * Opens a server-sent event stream the way a fetch-based EventSource does
 * (an EventSource cannot send `Authorization`), and parses it as it comes:
 * `events`, `comments` (heartbeats) and `retry` grow while it is open.
 * `close()` hangs up, as a client that goes away does.
 */
export async function openEventStream(
  base: string,
  path: string,
  opts: { token?: string; lastEventId?: string; address?: string } = {},
): Promise<{
  res: Response
  events: SseEvent[]
  comments: string[]
  retry: () => number | undefined
  /** True once the server ended the stream. */
  ended: () => boolean
  close: () => void
}> {
  const address = opts.address ?? client(base).address
  const headers: Record<string, string> = { Accept: 'text/event-stream', 'X-Forwarded-For': address, 'CF-Connecting-IP': address }
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`
  if (opts.lastEventId !== undefined) headers['Last-Event-ID'] = opts.lastEventId
  const hangUp = new AbortController()
  const res = await fetch(`${base}${path}`, { headers, signal: hangUp.signal })
  const events: SseEvent[] = []
  const comments: string[] = []
  let retry: number | undefined
  let ended = false
  if (res.ok && res.body) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    ;(async () => {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) {
          ended = true
          return
        }
        buffer += value
        let end = buffer.indexOf('\n\n')
        while (end >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          end = buffer.indexOf('\n\n')
          const event: SseEvent = { id: undefined, event: undefined, data: '' }
          let hasData = false
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim())
            const [field, ...rest] = line.split(':')
            const value = rest.join(':').replace(/^ /, '')
            if (field === 'id') event.id = value
            else if (field === 'event') event.event = value
            else if (field === 'retry') retry = Number(value)
            else if (field === 'data') {
              event.data += hasData ? `\n${value}` : value
              hasData = true
            }
          }
          if (hasData) events.push(event)
        }
      }
    })().catch(() => {})
  }
  return { res, events, comments, retry: () => retry, ended: () => ended, close: () => hangUp.abort() }
}
