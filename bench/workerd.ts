/**
 * Scenario 8 of `./run bench`, Workers (workerd): edgeshop's Worker bundle
 * (`wrangler deploy --dry-run --minify`) served by `workerd serve` beside a
 * bare worker in the same process, and what each route costs in CPU.
 *
 * One workerd runs three workers, each on a socket of its own: edgeshop as
 * the bench's main servers run (no Redis), edgeshop with the in-process L1
 * cache off (`CACHE_L1_MAX_ENTRIES=0`) reading through Redis via the Upstash
 * REST stand-in, and bench/limit/worker.js answering the bytes and headers
 * of edgeshop's hot read, captured from edgeshop in workerd first. PostgreSQL
 * comes through a Hyperdrive binding to the bench database, as `wrangler
 * dev` wires it for the contract suite (local Hyperdrive does no pooling:
 * every request that queries opens a connection of its own).
 *
 * Each case is a `wrk` run with workerd the only server running; the CPU
 * time (user + system, /proc/<pid>/stat) of the workerd process and, apart,
 * of every PostgreSQL process over the run, divided by the requests, is its
 * CPU per request; the sessions PostgreSQL started per request, beside it.
 * The bundle's size and the time from starting workerd to
 * the first answer (next to an empty worker) are measured here too.
 */
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../test/support/app-server.ts'
import { freePort } from '../test/support/free-port.ts'
import {
  alone,
  answerHeaders,
  buildWorker,
  type Case,
  CHECKOUT_CONNECTIONS,
  CUSTOMER_PASSWORD,
  databaseApart,
  HOT_CONNECTIONS,
  login,
  luaCheckout,
  luaPost,
  SECRET,
  say,
  scratchDir,
  serve,
  serverEnv,
  signup,
  sleep,
  wrk,
} from './harness.ts'
import { type BenchResults, type Measurement, WORKERD_CASES } from './results.ts'

export const WORKERD_BIN = join(ROOT, 'node_modules/@cloudflare/workerd-linux-64/bin/workerd')
/** The Worker's compatibility date, as deployed (wrangler.toml). */
const COMPATIBILITY_DATE = /^compatibility_date = "([^"]+)"/m.exec(readFileSync(join(ROOT, 'wrangler.toml'), 'utf8'))![1]!
const LOGIN_CONNECTIONS = 16

/** A worker of a workerd config: its service and socket name, its module's file (beside the config) and text bindings. */
export interface WorkerSpec {
  name: string
  module: string
  bindings: Record<string, string>
  /** A Hyperdrive binding HYPERDRIVE to this database of the config's PostgreSQL. */
  hyperdrive?: { database: string; user: string; password: string }
}

/**
 * A workerd config (Cap'n Proto text) serving each worker on a socket of
 * its name, at `ports[name]` on 127.0.0.1 (or one `--socket-addr` sets);
 * Hyperdrive bindings connect to `postgres` (host:port) over plain TCP.
 */
export function workerdConfig(workers: WorkerSpec[], ports: Record<string, number>, postgres?: string): string {
  const text = (s: string) => JSON.stringify(s)
  const services = workers.map((w) => `(name = ${text(w.name)}, worker = .${ident(w.name)})`)
  if (postgres) services.push(`(name = "postgres", external = (address = ${text(postgres)}, tcp = ()))`)
  const sockets = workers.map(
    (w) => `(name = ${text(w.name)}, address = ${text(`127.0.0.1:${ports[w.name] ?? 0}`)}, http = (), service = ${text(w.name)})`,
  )
  const defs = workers.map((w) => {
    const bindings = Object.entries(w.bindings).map(([k, v]) => `(name = ${text(k)}, text = ${text(v)})`)
    if (w.hyperdrive)
      bindings.push(
        `(name = "HYPERDRIVE", hyperdrive = (designator = (name = "postgres"), database = ${text(w.hyperdrive.database)}, user = ${text(w.hyperdrive.user)}, password = ${text(w.hyperdrive.password)}, scheme = "postgresql"))`,
      )
    return `const ${ident(w.name)} :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed ${text(w.module)}) ],
  compatibilityDate = ${text(COMPATIBILITY_DATE)},
  compatibilityFlags = ["nodejs_compat"],
  bindings = [ ${bindings.join(',\n    ')} ],
);`
  })
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ ${services.join(',\n    ')} ],
  sockets = [ ${sockets.join(',\n    ')} ],
);
${defs.join('\n')}
`
}

const ident = (name: string) => `w${name.replace(/[^A-Za-z0-9]/g, '')}`

// ---------------------------------------------------------------- CPU time

const TICK_MS = 1000 / (Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100)

/**
 * The CPU time in a /proc/<pid>/stat line, in ms: utime + stime, and with
 * `children` the reaped children's too (cutime + cstime). The command name
 * may hold spaces and parentheses: fields are counted after its last `)`.
 */
export function statCpuMs(stat: string, opts: { children?: boolean; tickMs?: number } = {}): number {
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number)
  // f[0] is field 3 (state): utime, stime, cutime and cstime are fields 14 to 17.
  return (f[11]! + f[12]! + (opts.children ? f[13]! + f[14]! : 0)) * (opts.tickMs ?? TICK_MS)
}

function processCpuMs(pid: number | string, children = false): number {
  try {
    return statCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8'), { children })
  } catch {
    return 0 // gone: an ended backend's time is in the postmaster's children's
  }
}

/** The CPU time of every process of the PostgreSQL whose data directory is `dataDir`, ended backends included, in ms. */
export function postgresCpuMs(dataDir: string): number {
  const postmaster = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim()
  const live = spawnSync('pgrep', ['-P', postmaster], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)
  return processCpuMs(postmaster, true) + live.reduce((sum, pid) => sum + processCpuMs(pid), 0)
}

/**
 * `measure`, with what each request cost: CPU time of the process `pid` and,
 * apart, of PostgreSQL, and the PostgreSQL sessions started (`sessions()`
 * counts them so far).
 */
async function perRequest(
  pid: number,
  db: Pick<WorkerdSetup, 'dataDir' | 'sessions'>,
  measure: () => Promise<Measurement>,
): Promise<Measurement> {
  const before = [processCpuMs(pid), postgresCpuMs(db.dataDir), await db.sessions()] as const
  const m = await measure()
  // No answer at all (a stalled run on a busy machine) has no cost per answer: NaN, which the report shows as –.
  const per = (x: number) => (m.requests ? x / m.requests : Number.NaN)
  return {
    ...m,
    cpuMs: per(processCpuMs(pid) - before[0]),
    dbCpuMs: per(postgresCpuMs(db.dataDir) - before[1]),
    dbSessions: per((await db.sessions()) - before[2]),
  }
}

// ---------------------------------------------------------------- cold start

/** Milliseconds from starting workerd with `module` to its first answer of /healthz: the median of `times` starts. */
async function coldStart(name: string, module: string, bindings: Record<string, string>, times: number): Promise<number> {
  const dir = join(scratchDir(), `workerd-${name}`)
  mkdirSync(dir, { recursive: true })
  copyFileSync(module, join(dir, 'worker.js'))
  writeFileSync(join(dir, 'config.capnp'), workerdConfig([{ name: 'main', module: 'worker.js', bindings }], {}))
  const took: number[] = []
  for (let i = 0; i < times; i++) {
    const port = await freePort()
    const t = performance.now()
    const child = spawn(WORKERD_BIN, ['serve', join(dir, 'config.capnp'), '--socket-addr', `main=127.0.0.1:${port}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let err = ''
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    try {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`workerd exited: ${err}`)
        if (performance.now() - t > 30_000) throw new Error(`workerd did not answer within 30 s: ${err}`)
        try {
          const res = await fetch(`http://127.0.0.1:${port}/healthz`)
          await res.arrayBuffer()
          if (res.ok) break
        } catch {
          await sleep(2)
        }
      }
      took.push(performance.now() - t)
    } finally {
      child.kill('SIGKILL')
    }
  }
  took.sort((a, b) => a - b)
  return Math.round(took[Math.floor(took.length / 2)]!)
}

/** The Worker bundle's size, raw and gzip -9, and its cold start in workerd next to an empty worker's. */
export async function measureBundle(quick: boolean): Promise<BenchResults['worker'] & { script: string }> {
  const { script, bytes, gzipBytes } = buildWorker(ROOT, join(scratchDir(), 'worker'))
  const empty = join(scratchDir(), 'empty.js')
  writeFileSync(empty, 'export default { fetch: () => new Response("ok") }\n')
  const times = quick ? 1 : 5
  const coldStartMs = await coldStart(
    'edgeshop',
    script,
    {
      JWT_SECRET: SECRET,
      DATABASE_URL: 'postgres://bench@127.0.0.1:9/none',
      PAYMENT_PROVIDER: 'simulated',
      MAILER: 'recording',
      LOG_LEVEL: 'warn',
    },
    times,
  )
  const emptyWorkerColdStartMs = await coldStart('empty', empty, {}, times)
  say(`worker: ${bytes} B minified, ${gzipBytes} B gzipped; cold start ${coldStartMs} ms (empty worker ${emptyWorkerColdStartMs} ms)`)
  return { script, bytes, gzipBytes, coldStartMs, emptyWorkerColdStartMs }
}

// ---------------------------------------------------------------- the scenario

export interface WorkerdSetup {
  /** The bench database (migrated, seeded, stock that never runs out). */
  databaseUrl: string
  /** PostgreSQL's data directory: its processes' CPU time, and its CPU for the checkout case. */
  dataDir: string
  /** The sessions PostgreSQL has started in the bench database so far (pg_stat_database). */
  sessions: () => Promise<number>
  upstash: { UPSTASH_REDIS_REST_URL: string; UPSTASH_REDIS_REST_TOKEN: string }
  hotPath: string
  /** Products checkout rotates over. */
  products: string[]
  quick: boolean
}

/** Starts workerd with edgeshop, edgeshop with L1 off and the bare worker; the cases that measure them; the bundle's figures. */
export async function workerdScenario(
  s: WorkerdSetup,
): Promise<{ cases: Case[]; worker: BenchResults['worker']; version: string; answerBytes: number }> {
  const { script, ...worker } = await measureBundle(s.quick)
  const dir = join(scratchDir(), 'workerd')
  mkdirSync(dir, { recursive: true })
  copyFileSync(script, join(dir, 'edgeshop.js'))
  copyFileSync(join(ROOT, 'bench/limit/worker.js'), join(dir, 'bare.js'))
  const db = new URL(s.databaseUrl)
  const hyperdrive = {
    database: db.pathname.slice(1),
    user: decodeURIComponent(db.username),
    password: decodeURIComponent(db.password),
  }
  const settings = serverEnv
  /** workerd serving the three workers; `bare` is what the bare worker answers. */
  const start = async (bare: Record<string, string>) => {
    const ports = { 'edgeshop-l1-off': await freePort(), bare: await freePort() }
    const config = workerdConfig(
      [
        { name: 'edgeshop', module: 'edgeshop.js', bindings: settings, hyperdrive },
        { name: 'edgeshop-l1-off', module: 'edgeshop.js', bindings: { ...settings, ...s.upstash, CACHE_L1_MAX_ENTRIES: '0' }, hyperdrive },
        { name: 'bare', module: 'bare.js', bindings: bare },
      ],
      ports,
      db.host,
    )
    writeFileSync(join(dir, 'config.capnp'), config)
    // serve() gives the port in PORT; the shell hands it to workerd and becomes it (exec), so the pid is workerd's.
    const server = await serve(
      'workerd',
      ['sh', '-c', `exec "$0" serve config.capnp --socket-addr "edgeshop=127.0.0.1:$PORT"`, WORKERD_BIN],
      {},
      {
        cwd: dir,
      },
    )
    return { server, l1Off: `http://127.0.0.1:${ports['edgeshop-l1-off']}`, bare: `http://127.0.0.1:${ports.bare}` }
  }

  // The bare worker's answer is edgeshop's own: read from edgeshop in a first workerd, then served from the second.
  const first = await start({})
  const answer = await fetch(first.server.url + s.hotPath)
  const body = await answer.text()
  if (answer.status !== 200) throw new Error(`the hot product answered ${answer.status} in workerd: ${body}`)
  await first.server.stop()
  const w = await start({ BODY: body, HEADERS: JSON.stringify(answerHeaders(answer)) })
  await sameAnswer(w.server.url + s.hotPath, w.bare + s.hotPath)
  // The L1-off worker reads the product into Redis on its first answer.
  await (await fetch(w.l1Off + s.hotPath)).arrayBuffer()

  // Customers of its own: a password hashed where it is checked (PBKDF2 in Workers).
  const loginCustomer = await signup(w.server.url, 'workerd-login')
  const checkoutCustomer = await signup(w.server.url, 'workerd-checkout')
  const loginScript = luaPost('/v1/auth/login', JSON.stringify({ email: loginCustomer.email, password: CUSTOMER_PASSWORD }))

  const workerd = w.server
  const load =
    (url: string, path: string, connections: number, script?: () => Promise<string> | string) =>
    async (seconds: number): Promise<Measurement> => {
      const file = script ? await script() : undefined
      return alone(workerd, () => perRequest(workerd.pid, s, () => wrk(url + path, { connections, seconds, script: file })))
    }
  const scenario = 'workerd'
  const cases: Case[] = [
    { scenario, name: WORKERD_CASES.bare, run: load(w.bare, s.hotPath, HOT_CONNECTIONS) },
    { scenario, name: WORKERD_CASES.hot, run: load(workerd.url, s.hotPath, HOT_CONNECTIONS) },
    { scenario, name: WORKERD_CASES.l1Off, run: load(w.l1Off, s.hotPath, HOT_CONNECTIONS) },
    { scenario, name: WORKERD_CASES.list, run: load(workerd.url, '/v1/products?limit=20', HOT_CONNECTIONS) },
    {
      scenario,
      name: WORKERD_CASES.checkout,
      // As the other checkout cases: PostgreSQL on CPU 0, its client (workerd) on CPU 1.
      run: databaseApart(
        s.dataDir,
        load(workerd.url, '/v1/orders', CHECKOUT_CONNECTIONS, async () =>
          luaCheckout(await login(workerd.url, checkoutCustomer.email), s.products),
        ),
      ),
    },
    { scenario, name: WORKERD_CASES.login, run: load(workerd.url, '/v1/auth/login', LOGIN_CONNECTIONS, () => loginScript) },
  ]
  const version = spawnSync(WORKERD_BIN, ['--version'], { encoding: 'utf8' })
    .stdout.trim()
    .replace(/^workerd /, '')
  return { cases, worker, version, answerBytes: Buffer.byteLength(body) }
}

/** Throws unless the two URLs answer the same status, bytes and headers (the request id's value and Date aside). */
async function sameAnswer(edgeshop: string, bare: string): Promise<void> {
  const [a, b] = await Promise.all([fetch(edgeshop), fetch(bare)])
  const [bodyA, bodyB] = await Promise.all([a.text(), b.text()])
  const heads = (res: Response) => {
    const h = answerHeaders(res)
    if (h['x-request-id']) h['x-request-id'] = '(each its own)'
    return JSON.stringify(Object.entries(h).sort())
  }
  if (a.status !== b.status || bodyA !== bodyB || heads(a) !== heads(b))
    throw new Error(
      `the bare worker does not answer as edgeshop does:\n${a.status} ${heads(a)}\n${bodyA}\n${b.status} ${heads(b)}\n${bodyB}`,
    )
}
