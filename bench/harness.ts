/**
 * What the benchmarks share: starting and pausing servers, driving them with
 * `wrk`, seeding, customers, the Lua scripts, the builds (the Node bundle and
 * the Worker bundle) and the run's cleanup. `bench/run.ts` (the full
 * comparison) and `bench/ab.ts` (two builds side by side) both use it.
 *
 * Servers run on CPU 1 and the load on CPU 0 where the machine has two cores
 * and `taskset` (docs/BENCHMARKS.md, Method).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { ROOT } from '../test/support/app-server.ts'
import { freePort } from '../test/support/free-port.ts'
import { runCommand } from '../test/support/run-command.ts'
import type { Measurement } from './results.ts'

export const HOT_CONNECTIONS = 64
export const CHECKOUT_CONNECTIONS = 16
export const SECRET = 'bench-secret-0123456789abcdef0123456789'
export const ADMIN = { email: 'bench-admin@example.test', password: 'bench admin password' }
export const CUSTOMER_PASSWORD = 'bench customer password'
export const PINNED = availableParallelism() >= 2 && has('taskset')
export const SERVER_CPU = PINNED ? ['taskset', '-c', '1'] : []
const LOAD_CPU = PINNED ? ['taskset', '-c', '0'] : []
export const bunBin = process.env.BUN_BIN ?? 'bun'
export const nodeBin = process.execPath

export function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}
export const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`)
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/** What the run undoes at its end, last first. */
export const cleanups: (() => Promise<void> | void)[] = []
/** Every server this run started, for `alone()`. */
const running: Server[] = []

let scratch: string | undefined
/** A directory of this run's own, removed at its end. */
export function scratchDir(): string {
  if (!scratch) {
    const dir = mkdtempSync(join(tmpdir(), 'edgeshop-bench-'))
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }))
    scratch = dir
  }
  return scratch
}

// ---------------------------------------------------------------- processes

export interface Server {
  name: string
  url: string
  pid: number
  stop(): Promise<void>
}

/** Starts `cmd` on the servers' CPU, in `opts.cwd` (the working tree by default), and waits for `opts.ready` to answer. */
export async function serve(
  name: string,
  cmd: string[],
  env: Record<string, string>,
  opts: { ready?: string; cwd?: string } = {},
): Promise<Server> {
  const port = await freePort()
  const base: Record<string, string | undefined> = { ...process.env }
  for (const key of Object.keys(base))
    if (/^(DATABASE_URL|UPSTASH_|QSTASH_|JWT_|ADMIN_|DATA_DIR|NODE_ENV|PORT|HOST|CORS_|METRICS_|CACHE_|LOG_)/.test(key)) delete base[key]
  const [bin, ...args] = [...SERVER_CPU, ...cmd]
  const child: ChildProcess = spawn(bin!, args, {
    cwd: opts.cwd ?? ROOT,
    env: { ...base, ...env, PORT: String(port), HOST: '127.0.0.1' },
    // Logs go where a production log shipper would read them from; here nowhere, at the cost of writing them.
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let err = ''
  let stopping = false
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)))
  child.once('exit', (code, signal) => {
    if (!stopping) say(`${name} exited unexpectedly (${code ?? signal}); its last words:\n${err}`)
  })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}): ${err}`)
    try {
      const res = await fetch(url + (opts.ready ?? '/healthz'), { signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.ok) break
    } catch {}
    if (Date.now() > deadline) throw new Error(`${name} did not answer within 60 s: ${err}`)
    await sleep(100)
  }
  const server: Server = {
    name,
    url,
    pid: child.pid!,
    async stop() {
      stopping = true
      // Never signalled again by alone(): its pid may go to another process.
      const at = running.indexOf(server)
      if (at >= 0) running.splice(at, 1)
      if (child.exitCode !== null) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGCONT')
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(5000)])
      if (child.exitCode === null) child.kill('SIGKILL')
    },
  }
  cleanups.push(() => server.stop())
  running.push(server)
  return server
}

/**
 * Runs `measure` with `server` the only one of this run's servers that can
 * run: every other one is paused (SIGSTOP) until it ends. They all share
 * CPU 1, and an idle server is not idle: edgeshop polls its job queue every
 * 500 ms, and each runtime's collector runs on timers. Those wakeups landed
 * in the measured server's tail (docs/BENCHMARKS.md, Method). With no
 * server (pgbench), every one is paused.
 */
export async function alone<T>(server: Server | undefined, measure: () => Promise<T>): Promise<T> {
  const signal = (s: Server, sig: NodeJS.Signals) => {
    try {
      process.kill(s.pid, sig)
    } catch {}
  }
  // Every server runs for a moment first: the one measured last finishes what it had in flight (a server paused
  // inside a transaction would hold its row locks and snapshot through this case), and the one measured now,
  // paused through the case before, catches up on its timers and sockets.
  await sleep(250)
  for (const s of running) if (s !== server) signal(s, 'SIGSTOP')
  try {
    return await measure()
  } finally {
    for (const s of running) signal(s, 'SIGCONT')
  }
}

/**
 * Puts the PostgreSQL server on `cpus`: the postmaster, every backend it
 * runs now, and (inherited) every backend it starts later.
 */
export function placeDatabase(dataDir: string, cpus: string): void {
  const postmaster = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim()
  const children = spawnSync('pgrep', ['-P', postmaster], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)
  for (const pid of [postmaster, ...children]) spawnSync('taskset', ['-a', '-p', '-c', cpus, pid], { stdio: 'ignore' })
}

/**
 * `run` with the database on CPU 0 and its client on CPU 1, as an
 * application server and its database on machines of their own
 * (docs/BENCHMARKS.md, Method); `dataDir` is the server's data directory.
 */
export function databaseApart(dataDir: string, run: (seconds: number) => Promise<Measurement>): (seconds: number) => Promise<Measurement> {
  return async (seconds) => {
    if (!PINNED) return run(seconds)
    placeDatabase(dataDir, '0')
    try {
      return await run(seconds)
    } finally {
      placeDatabase(dataDir, `0-${availableParallelism() - 1}`)
    }
  }
}

/** Resident memory of a process now (VmRSS), in KiB. */
export function rssKib(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) : null
  } catch {
    return null
  }
}

// ---------------------------------------------------------------- load

export function parseDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text)
  if (!m) return Number.NaN
  const n = Number(m[1])
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000
}

/** One wrk run: requests per second, latency percentiles (ms), answers that were not 2xx/3xx, socket errors. */
export async function wrk(url: string, opts: { connections: number; seconds: number; script?: string }): Promise<Measurement> {
  const args = [...LOAD_CPU, 'wrk', '-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', '--timeout', '5s']
  if (opts.script) args.push('-s', opts.script)
  args.push(url)
  // Awaited, not run synchronously: the Upstash REST stand-in in front of Redis runs in this process and must go on
  // answering while wrk drives the servers that use it.
  const { code, out } = await runCommand(args[0]!, args.slice(1), {}, (opts.seconds + 30) * 1000)
  if (code !== 0) throw new Error(`wrk exited with ${code}:\n${out}`)
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
  const pct = (p: string) => parseDuration(new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(out)?.[1] ?? '')
  // Printed by the steady cases' script (luaSteady), whose done() reads wrk's own latency histogram.
  const p999 = /^p99\.9 ([\d.]+) ms$/m.exec(out)?.[1]
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const errors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0
  const requests = Number(/(\d+) requests in /.exec(out)?.[1])
  if (!Number.isFinite(rps)) throw new Error(`wrk printed no rate:\n${out}`)
  return { rps, p50: pct('50'), p99: pct('99'), ...(p999 === undefined ? {} : { p999: Number(p999) }), non2xx, errors, requests }
}

/** One measured case of `./run bench`: its scenario, its name in the tables, and a run of `seconds`. */
export interface Case {
  scenario: string
  name: string
  run: (seconds: number) => Promise<Measurement>
}

/** The headers of an answer that a server sends itself, without those every HTTP server adds (Date, the length, the connection's). */
export function answerHeaders(res: Response): Record<string, string> {
  return Object.fromEntries(
    [...res.headers].filter(([name]) => !/^(date|content-length|connection|keep-alive|transfer-encoding)$/.test(name)),
  )
}

// ---------------------------------------------------------------- customers and scripts

export async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  // A kept-alive connection the server has just closed as idle fails the next request on it: try once more, afresh.
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      })
      return { status: res.status, body: (await res.json()) as Record<string, unknown> }
    } catch (err) {
      if (attempt === 3) throw err
    }
  }
}

export async function login(url: string, email: string): Promise<string> {
  const res = await post(`${url}/v1/auth/login`, { email, password: CUSTOMER_PASSWORD })
  if (res.status !== 200) throw new Error(`login of ${email} answered ${res.status}`)
  return res.body.accessToken as string
}

export function luaString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

export function luaHeaders(headers: Record<string, string>): string {
  return `{${Object.entries(headers)
    .map(([k, v]) => `[${luaString(k)}] = ${luaString(v)}`)
    .join(', ')}}`
}

export function writeLua(name: string, text: string): string {
  const file = join(scratchDir(), `${name}-${Date.now()}-${Math.random().toString(36).slice(2)}.lua`)
  writeFileSync(file, text)
  return file
}

/** A POST of `body` (JSON) to `path`, the same each time. */
export function luaPost(path: string, body: string, headers: Record<string, string> = {}): string {
  return writeLua(
    'post',
    `wrk.method = "POST"\nwrk.path = ${luaString(path)}\nwrk.body = ${luaString(body)}\nwrk.headers = ${luaHeaders({ 'Content-Type': 'application/json', ...headers })}\n`,
  )
}

/** POST /v1/orders, one line each, rotating over the products, a fresh Idempotency-Key per request. */
export function luaCheckout(token: string, products: string[]): string {
  const run = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`
  return writeLua(
    'checkout',
    `local products = {${products.map(luaString).join(', ')}}
local n = 0
request = function()
  n = n + 1
  local body = '{"items":[{"productId":"' .. products[(n % #products) + 1] .. '","quantity":1}]}'
  return wrk.format("POST", "/v1/orders", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = ${luaString(`Bearer ${token}`)},
    ["Idempotency-Key"] = ${luaString(run)} .. "-" .. n,
  }, body)
end
`,
  )
}

// ---------------------------------------------------------------- the service and its builds

/** The settings every edgeshop server of a run gets (a database URL and pool aside). */
export const serverEnv = {
  NODE_ENV: 'production',
  JWT_SECRET: SECRET,
  ADMIN_EMAIL: ADMIN.email,
  ADMIN_PASSWORD: ADMIN.password,
  PAYMENT_PROVIDER: 'simulated',
  MAILER: 'recording',
  RATE_LIMIT_AUTH: '100000000/60',
}

/** Each runtime as production runs it: Bun runs the sources, Node the bundle (`./run build:node`, as in the Docker image). */
export function edgeshopCommand(runtime: 'bun' | 'node'): string[] {
  return runtime === 'bun'
    ? [bunBin, 'src/runtime/bun.ts']
    : [
        'env',
        'MALLOC_ARENA_MAX=2',
        'MALLOC_MMAP_THRESHOLD_=131072',
        'NODE_OPTIONS=--max-semi-space-size=8 --max-old-space-size=256',
        nodeBin,
        'dist/runtime/node.mjs',
      ]
}

/** `./run build:node` in the tree at `root`. */
export function buildNode(root = ROOT): void {
  const built = spawnSync(bunBin, ['run', 'build:node'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] })
  if (built.status !== 0) throw new Error(`bun run build:node failed in ${root}`)
}

/** The Worker bundle `wrangler deploy --dry-run --minify` makes of the tree at `root`, into `out`: its path and size, raw and gzip -9. */
export function buildWorker(root: string, out: string): { script: string; bytes: number; gzipBytes: number } {
  const built = spawnSync(join(root, 'node_modules/.bin/wrangler'), ['deploy', '--dry-run', '--minify', '--outdir', out], {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1', WRANGLER_LOG_PATH: scratchDir() },
    encoding: 'utf8',
  })
  if (built.status !== 0) throw new Error(`wrangler could not build the worker in ${root}: ${built.stderr}`)
  const script = join(out, 'worker.js')
  return { script, bytes: statSync(script).size, gzipBytes: gzipSync(readFileSync(script), { level: 9 }).length }
}

/** Seeds `products` demo products (and the admin) into the database at `url`, with the seed script of the tree at `root`. */
export function seed(url: string, products: number, root = ROOT): void {
  const t = Date.now()
  const res = spawnSync(bunBin, ['scripts/seed.ts', '--products', String(products)], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: url, ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (res.status !== 0) throw new Error(`seeding failed: ${res.stderr}`)
  say(`seeded ${fmtCount(products)} products in ${((Date.now() - t) / 1000).toFixed(1)} s`)
}

export function fmtCount(n: number): string {
  return n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n)
}

/** A customer signed up through the API: its email and id. */
export async function signup(url: string, tag: string): Promise<{ email: string; id: string }> {
  const email = `bench-${tag}@example.test`
  const res = await post(`${url}/v1/auth/signup`, { email, password: CUSTOMER_PASSWORD, name: `Bench ${tag}` })
  if (res.status !== 201) throw new Error(`signup of ${email} answered ${res.status}`)
  return { email, id: (res.body.user as { id: string }).id }
}

/**
 * A SCHED_IDLE busy loop on the servers' CPU for the rest of the run, so the
 * VM's core never idles into a deep sleep between requests (docs/BENCHMARKS.md,
 * Method). Stop it with the returned function; the run's cleanup does too.
 */
export function startBusyLoop(): () => void {
  if (!PINNED || !has('chrt')) return () => {}
  const busy: ChildProcess = spawn('taskset', ['-c', '1', 'chrt', '-i', '0', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' })
  const stop = () => void busy.kill('SIGKILL')
  cleanups.push(stop)
  return stop
}

async function cleanup(): Promise<void> {
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {})
}

/** Runs `main`, then the cleanup (also on SIGINT/SIGTERM and on failure, which exits 1). */
export async function runMain(main: () => Promise<void>): Promise<void> {
  const started = Date.now()
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.on(signal, () => {
      void cleanup().finally(() => process.exit(130))
    })
  try {
    await main()
    await cleanup()
    say(`done in ${Math.round((Date.now() - started) / 1000)} s`)
  } catch (err) {
    say(
      `failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}${err instanceof Error && err.cause ? `\ncause: ${String((err.cause as Error).stack ?? err.cause)}` : ''}`,
    )
    await cleanup()
    process.exit(1)
  }
}
