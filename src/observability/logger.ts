/** Severity of a log line; `silent` drops everything. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'

export type LogFields = Record<string, unknown>

/**
 * Writes one JSON object per line. Fields whose names suggest a secret are
 * replaced, so a careless call site cannot leak a token or a password; a
 * number or a boolean under such a name (`purgedRefreshTokens: 12`) is a
 * count or a flag, never a secret, and is kept.
 *
 * @example
 * ```ts
 * const log = createLogger({ level: 'info' })
 * log.info('request', { method: 'GET', route: '/healthz', status: 200 })
 * ```
 */
export interface Logger {
  debug(msg: string, fields?: LogFields): void
  info(msg: string, fields?: LogFields): void
  warn(msg: string, fields?: LogFields): void
  error(msg: string, fields?: LogFields): void
  enabled(level: Exclude<LogLevel, 'silent'>): boolean
  /**
   * A line whose fields the caller has already serialised as JSON object
   * members (`"a":1,"b":"x"`), unscrubbed: for the one line per request, whose
   * fields are known names and values that need no escaping.
   */
  serialized(level: Exclude<LogLevel, 'silent'>, msg: string, members: string): void
}

/** Where finished lines go. The default is `console.log`; Bun and Node install a batched stdout writer. */
export type LogSink = (line: string) => void

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 }
const SECRET_KEY = /pass(word)?|secret|token|authorization|cookie|connection_?string|database_?url|signing_?key|api_?key/i

const RESERVED = new Set(['time', 'level', 'msg'])
const secretKeys = new Map<string, boolean>()

/** Whether a field name suggests a secret; remembered, since the names come from a bounded set of call sites. */
function isSecretKey(key: string): boolean {
  let secret = secretKeys.get(key)
  if (secret === undefined) {
    secret = SECRET_KEY.test(key)
    if (secretKeys.size < 1024) secretKeys.set(key, secret)
  }
  return secret
}

function scrub(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value
  if (value instanceof Error) return { name: value.name, message: value.message }
  if (depth > 4) return '[depth]'
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1))
  const out: Record<string, unknown> = {}
  for (const k in value) {
    if (depth === 0 && RESERVED.has(k)) continue
    const v = (value as Record<string, unknown>)[k]
    out[k] = typeof v !== 'number' && typeof v !== 'boolean' && isSecretKey(k) ? '[redacted]' : scrub(v, depth + 1)
  }
  return out
}

export function createLogger(opts: { level: LogLevel; sink?: LogSink; base?: LogFields }): Logger {
  const min = RANK[opts.level]
  const sink = opts.sink ?? ((line: string) => console.log(line))
  // The line is assembled as text: `time`, `level`, `msg`, the base fields, then the call's fields.
  const base = opts.base && Object.keys(opts.base).length > 0 ? `,${JSON.stringify(scrub(opts.base, 0)).slice(1, -1)}` : ''
  // The last line's head, kept: lines of one millisecond, level and message (a run of request lines) share it.
  let lastMs = Number.NaN
  let lastLevel = ''
  let lastMsg = ''
  let lastHead = ''
  const head = (level: Exclude<LogLevel, 'silent'>, msg: string) => {
    const ms = Date.now()
    if (ms !== lastMs || level !== lastLevel || msg !== lastMsg) {
      lastMs = ms
      lastLevel = level
      lastMsg = msg
      lastHead = `{"time":"${new Date(ms).toISOString()}","level":"${level}","msg":${JSON.stringify(msg)}${base}`
    }
    return lastHead
  }
  const write = (level: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields) => {
    if (RANK[level] < min) return
    const rest = fields ? JSON.stringify(scrub(fields, 0)) : '{}'
    sink(head(level, msg) + (rest.length > 2 ? `,${rest.slice(1)}` : '}'))
  }
  return {
    debug: (msg, fields) => write('debug', msg, fields),
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
    enabled: (level) => RANK[level] >= min,
    serialized: (level, msg, members) => {
      if (RANK[level] >= min) sink(`${head(level, msg)}${members === '' ? '' : `,${members}`}}`)
    },
  }
}
