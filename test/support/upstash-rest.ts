/**
 * A local stand-in for the Upstash Redis REST API in front of a real
 * redis-server, for tests and benchmarks. It speaks what `@upstash/redis`
 * (1.39) sends and expects:
 *
 * - Auth: `Authorization: Bearer <token>` (or `?_token=<token>` when the header
 *   is absent). Wrong/missing -> 401 `{"error":"Unauthorized"}`; the client
 *   turns that into `UpstashError("Unauthorized, command was: [...]")`.
 * - `POST /` with a JSON command array -> 200 `{"result":...}`; a Redis error
 *   reply -> 400 `{"error":"ERR ..."}` (client: `UpstashError("<error>, command
 *   was: ...")`).
 * - `POST /pipeline` with an array of command arrays -> 200
 *   `[{"result":...}|{"error":"..."}, ...]` in order. Note the client
 *   auto-pipelines by default (`enableAutoPipelining: true`), so plain
 *   `redis.get()` calls arrive here, and their Redis errors surface as
 *   `UpstashError("Command failed: <error>")`.
 * - `POST /multi-exec` -> MULTI, the commands, EXEC written back-to-back on one
 *   upstream connection; 200 with the same per-command shape as /pipeline
 *   (runtime errors in place). If Redis discards the transaction (a command
 *   is rejected while queueing) -> 400 `{"error":"EXECABORT ..."}`.
 * - Path form `GET|POST|PUT /<cmd>/<arg>/...`: URI-decoded segments; a
 *   non-empty POST/PUT body is appended as the last argument (raw bytes), then
 *   query parameters other than `_token` as `KEY`, `value` pairs
 *   (`/set/k?EX=100` with body `v` == `SET k v EX 100`).
 * - `Upstash-Encoding: base64` (the client's default): every string in the
 *   result (bulk strings and simple strings, recursively inside arrays) is
 *   base64 of its bytes, except a top-level simple-string reply `OK`, which
 *   is sent verbatim like the real service's `{"result":"OK"}` (the client
 *   decodes a top-level string unless it is exactly "OK", and decodes every
 *   string inside arrays, "OK" included; integers and null are left alone).
 *   Without the header, strings are sent as UTF-8 text. Errors are never
 *   encoded.
 * - Lua: scripts whose shebang carries flags Redis 7.0 does not know (Upstash's
 *   `#!lua flags=allow-key-locking`, used by @upstash/ratelimit >= 2.1) are
 *   rewritten to drop the unknown flags (Redis-known flags are kept; the body
 *   is untouched). EVALSHA/EVALSHA_RO with the SHA1 of the original text is
 *   translated to the SHA1 of the rewritten text; an unknown hash yields
 *   Redis's own `NOSCRIPT No matching script. Please use EVAL.`, upon which
 *   @upstash/ratelimit (and `redis.createScript().exec`) fall back to EVAL.
 *   `SCRIPT LOAD` answers the SHA1 of the original text; `SCRIPT EXISTS` maps
 *   hashes the same way.
 * - Commands that would corrupt the shared, pipelined upstream connections
 *   (MULTI/EXEC/WATCH/SELECT/SUBSCRIBE/MONITOR/QUIT/RESET/HELLO/AUTH, CLIENT
 *   REPLY/TRACKING, ...) are answered with an error instead of being sent.
 *   Blocking commands (BLPOP & co, WAIT, XREAD ... BLOCK) run on a dedicated
 *   short-lived connection so they do not stall everybody else.
 *
 * Upstream outages (bounded behaviour): when Redis refuses connections, drops
 * the connection, or an in-flight command gets no reply within
 * `commandTimeoutMs` (default 5000 ms, e.g. a SIGSTOPped server), the request
 * is answered with HTTP 503 `{"error":"ERR upstream redis unavailable: ..."}`
 * right away (refused/dropped) or after the timeout (hang). @upstash/redis
 * does not retry on HTTP errors, so the call throws an `UpstashError`
 * immediately. With `upstreamFailure: 'reset'` the stand-in instead destroys
 * the client's TCP connection, which @upstash/redis treats as a network error
 * and retries (5 retries, backoff exp(i)*50 ms, ~4.3 s in total) before
 * throwing `TypeError: fetch failed`. The next request reconnects to Redis.
 *
 * Silence: `silence()` makes the stand-in accept requests and never answer
 * them (an Upstash that hangs), until `speak()`, which drops the connections
 * of the requests it held; `unanswered()` counts those held now (a client
 * that gives up closes its own).
 *
 * Isolation: `db` makes every upstream connection `SELECT` that database, so
 * several stand-ins on one redis-server (e.g. one per app instance in a test
 * run) don't see each other's keys (FLUSHDB stays local; FLUSHALL does not).
 *
 * Efficiency: keep-alive HTTP (65 s idle timeout), `connections` (default 1)
 * long-lived pipelined RESP connections used round-robin, commands from all
 * requests in one event-loop turn flushed in one write, JSON built directly
 * as strings, no logging.
 */
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRespClient, type RespArg, type RespClient, RespConnectionError, RespError, type RespValue } from './resp.ts'

export interface UpstashRestOptions {
  redisPort: number
  redisHost?: string
  token: string
  /** HTTP port; default 0 (ephemeral). */
  port?: number
  /** Listen address; default 127.0.0.1 (tests send no traffic elsewhere). */
  host?: string
  /** Redis database index selected on every upstream connection. Default 0. */
  db?: number
  /** Number of pipelined upstream connections (round-robin). Default 1. */
  connections?: number
  /** Bound on waiting for a Redis reply before answering 503. Default 5000 ms. */
  commandTimeoutMs?: number
  /** Bound on connecting to Redis. Default 1000 ms. */
  connectTimeoutMs?: number
  /** How an upstream failure is reported: HTTP 503 (default) or a TCP reset. */
  upstreamFailure?: 'status' | 'reset'
  /** Maximum accepted request body. Default 64 MiB (413 beyond). */
  maxBodyBytes?: number
}

export interface UpstashRestStats {
  /** HTTP requests received (all paths, including rejected ones). */
  requests: number
  /** Redis commands received in authorized, well-formed requests. */
  commands: number
  unauthorized: number
  /** Requests answered 503 (or reset) because of the upstream. */
  upstreamFailures: number
}

export interface UpstashRestHandle {
  /** `http://127.0.0.1:<port>` — pass as `url` to `new Redis({ url, token })`. */
  url: string
  token: string
  port: number
  stats(): UpstashRestStats
  resetStats(): void
  /** Accept requests and never answer them, until `speak()`. */
  silence(): void
  /** Answer again; the requests held while silent lose their connection. */
  speak(): void
  /** Requests held open without an answer now. */
  unanswered(): number
  close(): Promise<void>
}

type JsonArg = string | number | boolean | null | object

const REDIS_70_SHEBANG_FLAGS = new Set(['no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys'])

const FORBIDDEN = new Set([
  'MULTI',
  'EXEC',
  'DISCARD',
  'WATCH',
  'UNWATCH',
  'SELECT',
  'SUBSCRIBE',
  'PSUBSCRIBE',
  'SSUBSCRIBE',
  'UNSUBSCRIBE',
  'PUNSUBSCRIBE',
  'SUNSUBSCRIBE',
  'MONITOR',
  'QUIT',
  'RESET',
  'HELLO',
  'AUTH',
  'SYNC',
  'PSYNC',
  'REPLCONF',
])
const FORBIDDEN_CLIENT_SUB = new Set(['REPLY', 'TRACKING', 'CACHING', 'KILL', 'PAUSE', 'NO-EVICT'])
const BLOCKING = new Set(['BLPOP', 'BRPOP', 'BRPOPLPUSH', 'BLMOVE', 'BLMPOP', 'BZPOPMIN', 'BZPOPMAX', 'BZMPOP', 'WAIT', 'WAITAOF'])

const JSON_HEADERS_BASE = { 'content-type': 'application/json' } as const

class HttpError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.status = status
  }
}

function sha1(s: string): string {
  return createHash('sha1').update(s).digest('hex')
}

function toArg(v: JsonArg): RespArg {
  if (typeof v === 'string') return v
  if (typeof v === 'number') return String(v)
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (v === null) return 'null'
  return JSON.stringify(v)
}

function argToString(a: RespArg | undefined): string {
  if (a === undefined) return ''
  return typeof a === 'string' ? a : a.toString()
}

/**
 * Serializes a reply as JSON text, base64-encoding strings if asked. Only a
 * top-level simple-string `OK` stays verbatim: the client decodes array
 * elements without the "OK" exception (a raw nested "OK" would decode to "8").
 */
function toJson(v: RespValue, b64: boolean, top = true): string {
  if (v === null) return 'null'
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null'
  if (typeof v === 'string') {
    if (!b64 || (top && v === 'OK')) return JSON.stringify(v)
    return `"${Buffer.from(v, 'utf8').toString('base64')}"`
  }
  if (Buffer.isBuffer(v)) {
    return b64 ? `"${v.toString('base64')}"` : JSON.stringify(v.toString('utf8'))
  }
  if (v instanceof RespError) {
    // An error nested inside an array (rare: e.g. a Lua table holding one).
    return b64 ? `"${Buffer.from(v.message, 'utf8').toString('base64')}"` : JSON.stringify(v.message)
  }
  let out = '['
  for (let i = 0; i < v.length; i++) {
    if (i > 0) out += ','
    out += toJson(v[i] as RespValue, b64, false)
  }
  return `${out}]`
}

function entryJson(v: RespValue, b64: boolean): string {
  return v instanceof RespError ? `{"error":${JSON.stringify(v.message)}}` : `{"result":${toJson(v, b64)}}`
}

function parseCommand(raw: unknown): RespArg[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new HttpError(400, 'ERR failed to parse command')
  const out = new Array<RespArg>(raw.length)
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i] as JsonArg | undefined
    if (v === undefined) throw new HttpError(400, 'ERR failed to parse command')
    out[i] = toArg(v)
  }
  return out
}

function parseCommandList(raw: unknown): RespArg[][] {
  if (!Array.isArray(raw) || raw.length === 0) throw new HttpError(400, 'ERR failed to parse pipeline request')
  return raw.map((c) => parseCommand(c))
}

export async function startUpstashRest(opts: UpstashRestOptions): Promise<UpstashRestHandle> {
  const redisHost = opts.redisHost ?? '127.0.0.1'
  const token = opts.token
  const expectedAuth = `Bearer ${token}`
  const commandTimeoutMs = opts.commandTimeoutMs ?? 5000
  const connectTimeoutMs = opts.connectTimeoutMs ?? 1000
  const failureMode = opts.upstreamFailure ?? 'status'
  const maxBody = opts.maxBodyBytes ?? 64 * 1024 * 1024
  const clientOpts = {
    host: redisHost,
    port: opts.redisPort,
    connectTimeoutMs,
    ...(opts.db !== undefined ? { db: opts.db } : {}),
  }
  const pool: RespClient[] = []
  for (let i = 0; i < Math.max(1, opts.connections ?? 1); i++) {
    pool.push(createRespClient({ ...clientOpts, commandTimeoutMs }))
  }
  let rr = 0
  const pick = (): RespClient => {
    const c = pool[rr] as RespClient
    rr = (rr + 1) % pool.length
    return c
  }
  const dedicated = new Set<RespClient>()

  const stats: UpstashRestStats = { requests: 0, commands: 0, unauthorized: 0, upstreamFailures: 0 }

  // ---- Lua shebang rewriting -------------------------------------------------
  const rewritten = new Map<string, { text: string; origSha: string }>() // original text -> rewrite
  const shaMap = new Map<string, string>() // sha1(original) -> sha1(rewritten)

  const rewriteScript = (src: string): { text: string; origSha: string } | null => {
    if (!src.startsWith('#!')) return null
    const hit = rewritten.get(src)
    if (hit !== undefined) return hit
    const nl = src.indexOf('\n')
    const line = nl === -1 ? src : src.slice(0, nl)
    const tokens = line.slice(2).trim().split(/\s+/)
    let changed = false
    const kept: string[] = []
    for (const t of tokens) {
      if (t.startsWith('flags=')) {
        const flags = t
          .slice(6)
          .split(',')
          .filter((f) => f.length > 0)
        const known = flags.filter((f) => REDIS_70_SHEBANG_FLAGS.has(f))
        if (known.length === flags.length) {
          kept.push(t)
        } else {
          changed = true
          if (known.length > 0) kept.push(`flags=${known.join(',')}`)
        }
      } else {
        kept.push(t)
      }
    }
    if (!changed) return null
    const text = `#!${kept.join(' ')}${nl === -1 ? '' : src.slice(nl)}`
    const entry = { text, origSha: sha1(src) }
    if (rewritten.size > 10_000) rewritten.clear()
    rewritten.set(src, entry)
    shaMap.set(entry.origSha, sha1(text))
    return entry
  }

  /** Rewrites a command for Redis; returns a post-processor for the reply if needed. */
  type Post = ((v: RespValue) => RespValue) | null
  const prepare = (cmd: RespArg[]): { args: RespArg[]; post: Post; blocking: boolean; reject: string | null } => {
    const name = argToString(cmd[0]).toUpperCase()
    if (FORBIDDEN.has(name)) {
      return { args: cmd, post: null, blocking: false, reject: `ERR Command is not allowed through the REST API: '${name}'` }
    }
    if (name === 'CLIENT' && FORBIDDEN_CLIENT_SUB.has(argToString(cmd[1]).toUpperCase())) {
      return {
        args: cmd,
        post: null,
        blocking: false,
        reject: `ERR Command is not allowed through the REST API: 'CLIENT ${argToString(cmd[1]).toUpperCase()}'`,
      }
    }
    let blocking = BLOCKING.has(name)
    if (!blocking && (name === 'XREAD' || name === 'XREADGROUP')) {
      blocking = cmd.some((a, i) => i > 0 && argToString(a).toUpperCase() === 'BLOCK')
    }
    if ((name === 'EVAL' || name === 'EVAL_RO') && typeof cmd[1] === 'string') {
      const r = rewriteScript(cmd[1])
      if (r !== null) {
        const args = cmd.slice()
        args[1] = r.text
        return { args, post: null, blocking, reject: null }
      }
    } else if ((name === 'EVALSHA' || name === 'EVALSHA_RO') && cmd[1] !== undefined) {
      const mapped = shaMap.get(argToString(cmd[1]).toLowerCase())
      if (mapped !== undefined) {
        const args = cmd.slice()
        args[1] = mapped
        return { args, post: null, blocking, reject: null }
      }
    } else if (name === 'SCRIPT') {
      const sub = argToString(cmd[1]).toUpperCase()
      if (sub === 'LOAD' && typeof cmd[2] === 'string') {
        const r = rewriteScript(cmd[2])
        if (r !== null) {
          const args = cmd.slice()
          args[2] = r.text
          const origSha = r.origSha
          return { args, post: (v) => (v instanceof RespError ? v : Buffer.from(origSha)), blocking, reject: null }
        }
      } else if (sub === 'EXISTS') {
        const args = cmd.map((a, i) => (i >= 2 ? (shaMap.get(argToString(a).toLowerCase()) ?? a) : a))
        return { args, post: null, blocking, reject: null }
      }
    }
    return { args: cmd, post: null, blocking, reject: null }
  }

  const runBlocking = async (args: RespArg[]): Promise<RespValue> => {
    const c = createRespClient(clientOpts)
    dedicated.add(c)
    try {
      return await c.send(args)
    } finally {
      dedicated.delete(c)
      void c.close()
    }
  }

  /** One command; rejects only with RespConnectionError. */
  const runOne = (cmd: RespArg[], client: RespClient): Promise<RespValue> | RespValue => {
    const p = prepare(cmd)
    if (p.reject !== null) return new RespError(p.reject)
    const reply = p.blocking ? runBlocking(p.args) : client.send(p.args)
    return p.post === null ? reply : reply.then(p.post)
  }

  const runPipeline = async (cmds: RespArg[][]): Promise<RespValue[]> => {
    const client = pick()
    const needsOrder = cmds.some((c) => {
      const n = argToString(c[0]).toUpperCase()
      return BLOCKING.has(n) || n === 'XREAD' || n === 'XREADGROUP'
    })
    if (!needsOrder) {
      // Written back-to-back in this tick: executed in order by Redis.
      return Promise.all(cmds.map((c) => runOne(c, client)))
    }
    const out: RespValue[] = []
    for (const c of cmds) out.push(await runOne(c, client))
    return out
  }

  const runMultiExec = async (cmds: RespArg[][]): Promise<RespValue[] | RespError> => {
    const prepared = cmds.map(prepare)
    for (const p of prepared) if (p.reject !== null) return new RespError(p.reject)
    const client = pick()
    // All written in this synchronous stretch => contiguous on the connection.
    const multi = client.send(['MULTI'])
    const queued = prepared.map((p) => client.send(p.args))
    const exec = client.send(['EXEC'])
    const [, , execReply] = await Promise.all([multi, Promise.all(queued), exec])
    if (execReply instanceof RespError) return execReply
    if (!Array.isArray(execReply)) return new RespError('EXECABORT Transaction discarded')
    return execReply.map((v, i) => {
      const post = prepared[i]?.post
      return post ? post(v) : v
    })
  }

  // ---- HTTP -----------------------------------------------------------------
  const send = (res: ServerResponse, status: number, body: string): void => {
    res.writeHead(status, { ...JSON_HEADERS_BASE, 'content-length': Buffer.byteLength(body) })
    res.end(body)
  }

  const upstreamFailed = (req: IncomingMessage, res: ServerResponse, err: RespConnectionError): void => {
    stats.upstreamFailures++
    if (failureMode === 'reset') {
      req.socket.destroy()
      return
    }
    send(res, 503, JSON.stringify({ error: `ERR upstream redis unavailable: ${err.message}` }))
  }

  const handle = async (req: IncomingMessage, res: ServerResponse, body: Buffer | null): Promise<void> => {
    const rawUrl = req.url ?? '/'
    const q = rawUrl.indexOf('?')
    const path = q === -1 ? rawUrl : rawUrl.slice(0, q)
    const query = q === -1 ? null : new URLSearchParams(rawUrl.slice(q + 1))

    // Auth
    const auth = req.headers.authorization
    let authorized: boolean
    if (auth !== undefined) {
      authorized = auth === expectedAuth || /^bearer\s+(.+)$/i.exec(auth.trim())?.[1] === token
    } else {
      authorized = query?.get('_token') === token
    }
    if (!authorized) {
      stats.unauthorized++
      send(res, 401, '{"error":"Unauthorized"}')
      return
    }

    const method = req.method ?? 'GET'
    const b64 = (req.headers['upstash-encoding'] ?? '').toString().toLowerCase() === 'base64'

    if (path === '/' || path === '' || path === '/pipeline' || path === '/multi-exec') {
      if (method !== 'POST' && method !== 'PUT') throw new HttpError(405, 'ERR Method Not Allowed')
      let parsed: unknown
      try {
        parsed = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8'))
      } catch {
        throw new HttpError(400, 'ERR failed to parse command')
      }
      if (path === '/pipeline' || path === '/multi-exec') {
        const cmds = parseCommandList(parsed)
        stats.commands += cmds.length
        const results = path === '/pipeline' ? await runPipeline(cmds) : await runMultiExec(cmds)
        if (results instanceof RespError) {
          send(res, 400, `{"error":${JSON.stringify(results.message)}}`)
          return
        }
        let out = '['
        for (let i = 0; i < results.length; i++) {
          if (i > 0) out += ','
          out += entryJson(results[i] as RespValue, b64)
        }
        send(res, 200, `${out}]`)
        return
      }
      const cmd = parseCommand(parsed)
      stats.commands++
      const reply = await runOne(cmd, pick())
      if (reply instanceof RespError) send(res, 400, `{"error":${JSON.stringify(reply.message)}}`)
      else send(res, 200, `{"result":${toJson(reply, b64)}}`)
      return
    }

    // Path form: /<cmd>/<arg>/...[?KEY=value...]
    if (method !== 'GET' && method !== 'POST' && method !== 'PUT') throw new HttpError(405, 'ERR Method Not Allowed')
    const segs = path.split('/').slice(1)
    if (segs.length > 1 && segs[segs.length - 1] === '') segs.pop()
    let cmd: RespArg[]
    try {
      cmd = segs.map((s) => decodeURIComponent(s))
    } catch {
      throw new HttpError(400, 'ERR failed to parse command')
    }
    if (cmd.length === 0 || cmd[0] === '') throw new HttpError(400, 'ERR failed to parse command')
    if (body !== null && body.length > 0) cmd.push(body)
    if (query !== null) {
      for (const [k, v] of query) {
        if (k === '_token') continue
        cmd.push(k)
        if (v !== '') cmd.push(v)
      }
    }
    stats.commands++
    const reply = await runOne(cmd, pick())
    if (reply instanceof RespError) send(res, 400, `{"error":${JSON.stringify(reply.message)}}`)
    else send(res, 200, `{"result":${toJson(reply, b64)}}`)
  }

  const onError = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    if (err instanceof RespConnectionError) {
      upstreamFailed(req, res, err)
    } else if (err instanceof HttpError) {
      send(res, err.status, JSON.stringify({ error: err.message }))
    } else {
      send(res, 500, JSON.stringify({ error: `ERR internal stand-in error: ${String(err)}` }))
    }
  }

  let silent = false
  const held = new Set<ServerResponse>()
  const server = createServer((req, res) => {
    stats.requests++
    if (silent) {
      held.add(res)
      res.once('close', () => held.delete(res))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    let tooBig = false
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > maxBody) tooBig = true
      else chunks.push(c)
    })
    req.on('end', () => {
      if (tooBig) {
        send(res, 413, '{"error":"ERR request body too large"}')
        return
      }
      const body = chunks.length === 0 ? null : chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size)
      handle(req, res, body).catch((err: unknown) => {
        if (!res.headersSent) onError(req, res, err)
      })
    })
  })
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  server.requestTimeout = 0

  const listenHost = opts.host ?? '127.0.0.1'
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, listenHost, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port

  let closing: Promise<void> | null = null
  return {
    url: `http://${listenHost}:${port}`,
    token,
    port,
    stats: () => ({ ...stats }),
    silence() {
      silent = true
    },
    speak() {
      silent = false
      for (const res of held) res.socket?.destroy()
      held.clear()
    },
    unanswered: () => held.size,
    resetStats(): void {
      stats.requests = 0
      stats.commands = 0
      stats.unauthorized = 0
      stats.upstreamFailures = 0
    },
    close(): Promise<void> {
      closing ??= (async () => {
        for (const res of held) res.socket?.destroy()
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeAllConnections()
        await Promise.all([closed, ...pool.map((c) => c.close()), ...[...dedicated].map((c) => c.close())])
      })()
      return closing
    },
  }
}
