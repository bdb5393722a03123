/**
 * A small, dependency-free RESP2 client over node:net, made for tests and
 * benchmarks (it backs the local Upstash REST stand-in).
 *
 * - Pipelining: any number of commands may be in flight on one socket; replies
 *   are matched to commands in FIFO order. Commands issued in the same
 *   synchronous stretch of code are written contiguously (one write per event
 *   loop turn, flushed from `setImmediate`), so e.g. MULTI ... EXEC sent in one
 *   loop can not interleave with other callers' commands.
 * - Redis error replies are *values* (`RespError`), never rejections. A
 *   promise from `send()` only rejects with a `RespConnectionError` when the
 *   connection fails (refused, dropped, timed out, protocol error, closed).
 * - Lazy (re)connect: the socket is opened by the first `send()`, and after it
 *   drops (every command in flight on it rejects) the next `send()` opens a new
 *   one. With `db` set, `SELECT db` is sent first on every new socket.
 * - Bulk strings are returned as Buffers that may be views (`subarray`) into
 *   the socket's receive buffers; copy them if you keep many small ones long.
 */
import { connect, type Socket } from 'node:net'

export type RespArg = string | number | Buffer

/** A Redis error reply (`-ERR ...`), returned as a value. */
export class RespError {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
  /** First word of the message, e.g. `ERR`, `NOSCRIPT`, `WRONGTYPE`. */
  get code(): string {
    const i = this.message.indexOf(' ')
    return i === -1 ? this.message : this.message.slice(0, i)
  }
  toString(): string {
    return this.message
  }
}

/**
 * - simple string -> `string`
 * - error -> `RespError`
 * - integer -> `number` (precision is lost beyond 2^53)
 * - bulk string -> `Buffer`, null bulk -> `null`
 * - array -> `RespValue[]` (nested), null array -> `null`
 */
export type RespValue = string | number | Buffer | null | RespError | RespValue[]

/** Rejection reason for commands that got no reply because of the connection. */
export class RespConnectionError extends Error {
  readonly code: string
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RespConnectionError'
    this.code = code
  }
}

export interface RespClientOptions {
  host?: string
  port: number
  /** `SELECT db` on every new connection (default: none, i.e. db 0). */
  db?: number
  /** Bound on establishing the TCP connection. Default 2000 ms. */
  connectTimeoutMs?: number
  /**
   * If > 0: when the oldest in-flight command has waited longer than this,
   * the socket is destroyed and every in-flight command rejects with code
   * `ETIMEDOUT` (replies can't be re-matched after a skipped one). Default 0
   * (no bound). Checked with a coarse timer (granularity ~timeout/4).
   */
  commandTimeoutMs?: number
}

export interface RespClient {
  /** Sends one command. Resolves with the reply (errors included as `RespError`). */
  send(args: readonly RespArg[]): Promise<RespValue>
  /** Commands written but not yet answered on the current connection. */
  readonly inFlight: number
  /** True while a socket is open and connected. */
  readonly connected: boolean
  /** Closes the socket; in-flight commands reject; later sends reject. */
  close(): Promise<void>
}

interface Pending {
  resolve: (v: RespValue) => void
  reject: (e: Error) => void
  sentAt: number
}

const CR = 13
const LF = 10
const PLUS = 43 // +
const MINUS = 45 // -
const COLON = 58 // :
const DOLLAR = 36 // $
const STAR = 42 // *

const NOOP = (): void => {}

/** Encodes one command as a RESP array of bulk strings. */
export function encodeCommand(args: readonly RespArg[]): string | Buffer {
  let hasBuffer = false
  for (let i = 0; i < args.length; i++) {
    if (typeof args[i] !== 'string' && typeof args[i] !== 'number') {
      if (Buffer.isBuffer(args[i])) hasBuffer = true
      else throw new TypeError(`RESP argument ${i} must be a string, number or Buffer, got ${typeof args[i]}`)
    }
  }
  if (!hasBuffer) {
    let out = `*${args.length}\r\n`
    for (let i = 0; i < args.length; i++) {
      const a = args[i]
      const s = typeof a === 'number' ? String(a) : (a as string)
      out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`
    }
    return out
  }
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as RespArg
    const b = Buffer.isBuffer(a) ? a : Buffer.from(typeof a === 'number' ? String(a) : a)
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

function parseIntAscii(buf: Buffer, start: number, end: number): number {
  let i = start
  let neg = false
  if (buf[i] === MINUS) {
    neg = true
    i++
  }
  let n = 0
  if (end - i > 15) {
    // Would lose precision in the fast path; let Number() do the rounding.
    n = Number(buf.toString('latin1', i, end))
  } else {
    for (; i < end; i++) {
      const c = (buf[i] as number) - 48
      if (c < 0 || c > 9) return Number.NaN
      n = n * 10 + c
    }
  }
  return neg ? -n : n
}

class Conn {
  readonly socket: Socket
  dead = false
  connected = false
  private readonly queue: Pending[] = []
  private head = 0
  // parser state
  private buf: Buffer | null = null
  private pos = 0
  private need = 0 // bytes required from `pos` before parsing is worth retrying
  private pendingChunks: Buffer[] = []
  private pendingLen = 0
  private readonly stack: { arr: RespValue[]; i: number }[] = []
  // write batching
  private outStr = ''
  private outParts: (string | Buffer)[] = []
  private flushScheduled = false
  private failure: RespConnectionError | null = null
  private connectTimer: NodeJS.Timeout | null = null
  private watchdog: NodeJS.Timeout | null = null
  private readonly onGone: (c: Conn) => void
  private readonly closed: Promise<void>

  constructor(opts: RespClientOptions, onGone: (c: Conn) => void) {
    this.onGone = onGone
    const host = opts.host ?? '127.0.0.1'
    const socket = connect({ host, port: opts.port, noDelay: true })
    this.socket = socket
    const connectTimeoutMs = opts.connectTimeoutMs ?? 2000
    this.connectTimer = setTimeout(() => {
      this.fail(new RespConnectionError(`connect to ${host}:${opts.port} timed out after ${connectTimeoutMs} ms`, 'ETIMEDOUT'))
    }, connectTimeoutMs)
    this.connectTimer.unref()
    socket.on('connect', () => {
      if (this.connectTimer) clearTimeout(this.connectTimer)
      this.connectTimer = null
      this.connected = true
    })
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.failure ??= new RespConnectionError(`redis connection ${host}:${opts.port} failed: ${err.message}`, err.code ?? 'ECONNERROR', {
        cause: err,
      })
      this.dead = true
    })
    socket.on('end', () => {
      this.dead = true
    })
    this.closed = new Promise<void>((resolve) => {
      socket.on('close', () => {
        this.dead = true
        this.connected = false
        if (this.connectTimer) clearTimeout(this.connectTimer)
        if (this.watchdog) clearInterval(this.watchdog)
        this.connectTimer = null
        this.watchdog = null
        const err = this.failure ?? new RespConnectionError(`redis connection ${host}:${opts.port} closed`, 'ECONNRESET')
        this.rejectAll(err)
        this.buf = null
        this.pendingChunks = []
        this.stack.length = 0
        this.outStr = ''
        this.outParts = []
        this.onGone(this)
        resolve()
      })
    })
    const t = opts.commandTimeoutMs ?? 0
    if (t > 0) {
      this.watchdog = setInterval(
        () => {
          const oldest = this.queue[this.head]
          if (oldest !== undefined && Date.now() - oldest.sentAt > t) {
            this.fail(new RespConnectionError(`redis command timed out after ${t} ms`, 'ETIMEDOUT'))
          }
        },
        Math.max(5, Math.min(1000, Math.floor(t / 4))),
      )
      this.watchdog.unref()
    }
    if (opts.db !== undefined && opts.db !== 0) {
      // Internal command: any error reply kills the connection.
      this.write(encodeCommand(['SELECT', opts.db]), {
        resolve: (v) => {
          if (v instanceof RespError) this.fail(new RespConnectionError(`SELECT ${opts.db} failed: ${v.message}`, 'ESELECT'))
        },
        reject: NOOP,
        sentAt: Date.now(),
      })
    }
  }

  get inFlight(): number {
    return this.queue.length - this.head
  }

  fail(err: RespConnectionError): void {
    this.failure ??= err
    this.dead = true
    this.socket.destroy()
  }

  async end(timeoutMs: number): Promise<void> {
    this.failure ??= new RespConnectionError('redis client closed', 'ECLOSED')
    this.dead = true
    if (this.inFlight === 0 && this.connected) this.socket.end()
    else this.socket.destroy()
    const t = setTimeout(() => this.socket.destroy(), timeoutMs)
    await this.closed
    clearTimeout(t)
  }

  write(data: string | Buffer, p: Pending): void {
    this.queue.push(p)
    if (typeof data === 'string') {
      this.outStr += data
    } else {
      if (this.outStr.length > 0) {
        this.outParts.push(this.outStr)
        this.outStr = ''
      }
      this.outParts.push(data)
    }
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
  }

  private flush(): void {
    this.flushScheduled = false
    if (this.socket.destroyed) return
    if (this.outParts.length === 0) {
      if (this.outStr.length > 0) this.socket.write(this.outStr)
    } else {
      if (this.outStr.length > 0) this.outParts.push(this.outStr)
      this.socket.cork()
      for (const part of this.outParts) this.socket.write(part)
      this.socket.uncork()
    }
    this.outStr = ''
    this.outParts = []
  }

  private rejectAll(err: Error): void {
    const waiting = this.queue.slice(this.head)
    this.queue.length = 0
    this.head = 0
    for (const p of waiting) p.reject(err)
  }

  private deliver(value: RespValue): boolean {
    const p = this.queue[this.head]
    if (p === undefined) {
      this.fail(new RespConnectionError('RESP protocol error: reply without a pending command', 'EPROTO'))
      return false
    }
    this.queue[this.head] = undefined as unknown as Pending
    this.head++
    if (this.head === this.queue.length) {
      this.queue.length = 0
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue.splice(0, this.head)
      this.head = 0
    }
    p.resolve(value)
    return true
  }

  private onData(chunk: Buffer): void {
    if (this.dead && this.socket.destroyed) return
    if (this.buf === null) {
      this.buf = chunk
      this.pos = 0
    } else {
      this.pendingChunks.push(chunk)
      this.pendingLen += chunk.length
      const have = this.buf.length - this.pos + this.pendingLen
      if (have < this.need) return // a big bulk string is still arriving
      this.buf = Buffer.concat([this.buf.subarray(this.pos), ...this.pendingChunks], have)
      this.pos = 0
      this.pendingChunks = []
      this.pendingLen = 0
    }
    this.parse()
    if (this.buf !== null && this.pos >= this.buf.length) {
      this.buf = null
      this.pos = 0
      this.need = 0
    }
  }

  /**
   * Incremental parser. Partially received arrays are kept on `this.stack`
   * (elements already parsed are not parsed again); an incomplete bulk string
   * records how many bytes it needs so chunks are only concatenated once.
   */
  private parse(): void {
    const buf = this.buf as Buffer
    const len = buf.length
    let pos = this.pos
    const stack = this.stack
    outer: while (pos < len) {
      const type = buf[pos]
      const lineEnd = buf.indexOf(CR, pos + 1)
      if (lineEnd === -1 || lineEnd + 1 >= len) {
        this.need = len - pos + 1
        break
      }
      if (buf[lineEnd + 1] !== LF) {
        this.fail(new RespConnectionError('RESP protocol error: expected CRLF', 'EPROTO'))
        return
      }
      let value: RespValue
      switch (type) {
        case PLUS:
          value = buf.toString('utf8', pos + 1, lineEnd)
          pos = lineEnd + 2
          break
        case MINUS:
          value = new RespError(buf.toString('utf8', pos + 1, lineEnd))
          pos = lineEnd + 2
          break
        case COLON:
          value = parseIntAscii(buf, pos + 1, lineEnd)
          pos = lineEnd + 2
          break
        case DOLLAR: {
          const n = parseIntAscii(buf, pos + 1, lineEnd)
          if (n < 0) {
            value = null
            pos = lineEnd + 2
            break
          }
          const start = lineEnd + 2
          const end = start + n
          if (end + 2 > len) {
            this.need = end + 2 - pos
            break outer
          }
          value = buf.subarray(start, end)
          pos = end + 2
          break
        }
        case STAR: {
          const n = parseIntAscii(buf, pos + 1, lineEnd)
          pos = lineEnd + 2
          if (n < 0) {
            value = null
            break
          }
          if (n === 0) {
            value = []
            break
          }
          stack.push({ arr: new Array<RespValue>(n), i: 0 })
          continue
        }
        default:
          this.fail(new RespConnectionError(`RESP protocol error: unexpected type byte ${type}`, 'EPROTO'))
          return
      }
      // Place the value into the innermost open array, closing arrays as they fill.
      for (;;) {
        const top = stack[stack.length - 1]
        if (top === undefined) {
          if (!this.deliver(value)) return
          break
        }
        top.arr[top.i++] = value
        if (top.i < top.arr.length) break
        stack.pop()
        value = top.arr
      }
    }
    this.pos = pos
    if (pos >= len) this.need = 0
  }
}

export function createRespClient(opts: RespClientOptions): RespClient {
  let conn: Conn | null = null
  let closed = false
  const onGone = (c: Conn): void => {
    if (conn === c) conn = null
  }
  return {
    send(args: readonly RespArg[]): Promise<RespValue> {
      if (closed) return Promise.reject(new RespConnectionError('redis client closed', 'ECLOSED'))
      let data: string | Buffer
      try {
        data = encodeCommand(args)
      } catch (err) {
        return Promise.reject(err)
      }
      if (conn === null || conn.dead) conn = new Conn(opts, onGone)
      const c = conn
      return new Promise<RespValue>((resolve, reject) => {
        c.write(data, { resolve, reject, sentAt: Date.now() })
      })
    },
    get inFlight(): number {
      return conn === null ? 0 : conn.inFlight
    },
    get connected(): boolean {
      return conn?.connected === true && !conn.dead
    },
    async close(): Promise<void> {
      closed = true
      const c = conn
      conn = null
      if (c !== null) await c.end(1000)
    },
  }
}
