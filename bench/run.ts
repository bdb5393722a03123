/**
 * `./run bench [--quick]`: edgeshop measured side by side with the
 * runtime's own limit and with the peers, in one run, as ratios.
 *
 * It starts what it needs — PostgreSQL, redis-server with the Upstash REST
 * stand-in in front of it, edgeshop on Bun and on Node in Postgres mode (in
 * several cache configurations), the limit servers of bench/limit/ and the
 * peers of bench/peers/ — seeds the data, drives each case with `wrk`,
 * runs `pgbench` with checkout's SQL, builds the Worker bundle and starts it
 * in workerd, then stops everything. Traffic stays on 127.0.0.1.
 *
 * Method (see docs/BENCHMARKS.md): servers pinned to CPU 1, `wrk` to CPU 0
 * (for checkout, PostgreSQL on CPU 0 and its client, edgeshop or `pgbench`,
 * on CPU 1), a SCHED_IDLE busy loop on CPU 1 so the VM's core does
 * not sleep between requests, every case measured once per round with the
 * rounds interleaved, and the median of the rounds reported.
 *
 * Writes bench/results/<date>.json and regenerates docs/BENCHMARKS.md
 * (bench/report.ts). `--quick` (one short round, a small "large" catalog)
 * checks that the harness works in under two minutes; it writes its figures
 * to bench/results/quick.json and leaves the report alone.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import postgres from 'postgres'
import { encodeCursor } from '../src/features/catalog/service.ts'
import { ROOT } from '../test/support/app-server.ts'
import { freePort } from '../test/support/free-port.ts'
import { findPostgresBin, startPostgres } from '../test/support/postgres.ts'
import { startRedisServer } from '../test/support/redis-server.ts'
import { runCommand } from '../test/support/run-command.ts'
import { createMigratedDatabase } from '../test/support/services.ts'
import { startUpstashRest } from '../test/support/upstash-rest.ts'
import { writeReport } from './report.ts'
import type { BenchResults, CaseResult, Measurement } from './results.ts'

const QUICK = process.argv.includes('--quick')
const plan = QUICK
  ? { seconds: 1, warmSeconds: 1, rounds: 1, big: 20_000, manyOrders: 2_000 }
  : { seconds: 6, warmSeconds: 3, rounds: 3, big: 1_000_000, manyOrders: 100_000 }
const HOT_CONNECTIONS = 64
const DB_CONNECTIONS = 16
const CHECKOUT_CONNECTIONS = 16
/**
 * The steady-rate latency cases: each of the 64 connections is a client that
 * thinks between answers, for a random time of this mean (exponentially
 * distributed, wrk's `delay()`), which holds every server at about the same
 * rate (~15k req/s here), below what any of them can serve, so the tail is
 * what the server adds rather than the queue of a saturated core. A fixed
 * pause kept the 64 clients in step: wrk's timers fire on millisecond ticks,
 * so they all sent at once, and p99 was the time to answer that burst of 64
 * (docs/BENCHMARKS.md, Method).
 */
const STEADY_PAUSE_MS = 4
const SECRET = 'bench-secret-0123456789abcdef0123456789'
const ADMIN = { email: 'bench-admin@example.test', password: 'bench admin password' }
const CUSTOMER_PASSWORD = 'bench customer password'
const PINNED = availableParallelism() >= 2 && has('taskset')
const SERVER_CPU = PINNED ? ['taskset', '-c', '1'] : []
const LOAD_CPU = PINNED ? ['taskset', '-c', '0'] : []
const bunBin = process.env.BUN_BIN ?? 'bun'
const nodeBin = process.execPath

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}
const say = (msg: string) => process.stderr.write(`[bench] ${msg}\n`)
const started = Date.now()
const cleanups: (() => Promise<void> | void)[] = []
/** Every server this run started, for `alone()`. */
const running: Server[] = []

// ---------------------------------------------------------------- processes

interface Server {
  name: string
  url: string
  pid: number
  stop(): Promise<void>
}

async function serve(name: string, cmd: string[], env: Record<string, string>, opts: { ready?: string } = {}): Promise<Server> {
  const port = await freePort()
  const base: Record<string, string | undefined> = { ...process.env }
  for (const key of Object.keys(base))
    if (/^(DATABASE_URL|UPSTASH_|QSTASH_|JWT_|ADMIN_|DATA_DIR|NODE_ENV|PORT|HOST|CORS_|METRICS_|CACHE_|LOG_)/.test(key)) delete base[key]
  const [bin, ...args] = [...SERVER_CPU, ...cmd]
  const child: ChildProcess = spawn(bin!, args, {
    cwd: ROOT,
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
async function alone<T>(server: Server | undefined, measure: () => Promise<T>): Promise<T> {
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resident memory of a process now (VmRSS), in MB. */
function rssMb(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Math.round(Number(m[1]) / 1024) : null
  } catch {
    return null
  }
}

/** Peak resident memory of a process so far (VmHWM), in MB. */
function peakRssMb(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Math.round(Number(m[1]) / 1024) : null
  } catch {
    return null
  }
}

/**
 * Puts the PostgreSQL server on `cpus`: the postmaster, every backend it
 * runs now, and (inherited) every backend it starts later.
 */
function placeDatabase(dataDir: string, cpus: string): void {
  const postmaster = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim()
  const children = spawnSync('pgrep', ['-P', postmaster], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)
  for (const pid of [postmaster, ...children]) spawnSync('taskset', ['-a', '-p', '-c', cpus, pid], { stdio: 'ignore' })
}

// ---------------------------------------------------------------- load

function parseDuration(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text)
  if (!m) return Number.NaN
  const n = Number(m[1])
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000
}

/** One wrk run: requests per second, latency percentiles (ms), answers that were not 2xx/3xx, socket errors. */
async function wrk(url: string, opts: { connections: number; seconds: number; script?: string }): Promise<Measurement> {
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
  if (!Number.isFinite(rps)) throw new Error(`wrk printed no rate:\n${out}`)
  return { rps, p50: pct('50'), p99: pct('99'), ...(p999 === undefined ? {} : { p999: Number(p999) }), non2xx, errors }
}

async function pgbench(
  url: string,
  script: string,
  opts: { clients: number; seconds: number; vars: Record<string, string> },
): Promise<Measurement> {
  const bin = join(findPostgresBin(), 'pgbench')
  // pgbench takes the place of edgeshop as the database's client: on the servers' CPU.
  const args = [...SERVER_CPU, bin, '-n', '-M', 'prepared', `-c${opts.clients}`, '-j1', `-T${opts.seconds}`, '-f', script, '-r']
  for (const [k, v] of Object.entries(opts.vars)) args.push('-D', `${k}=${v}`)
  args.push(url)
  const { out } = await runCommand(args[0]!, args.slice(1), {}, (opts.seconds + 60) * 1000)
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1])
  const lat = Number(/latency average = ([\d.]+) ms/.exec(out)?.[1])
  const failed = Number(/number of failed transactions: (\d+)/.exec(out)?.[1] ?? 0)
  if (!Number.isFinite(tps)) throw new Error(`pgbench printed no rate:\n${out}`)
  return { rps: tps, p50: lat, p99: Number.NaN, non2xx: failed, errors: 0 }
}

// ---------------------------------------------------------------- setup

const scratch = mkdtempSync(join(tmpdir(), 'edgeshop-bench-'))
cleanups.push(() => rmSync(scratch, { recursive: true, force: true }))
let busy: ChildProcess | undefined

async function main(): Promise<void> {
  if (!has('wrk')) throw new Error('wrk is needed: apt-get install wrk')
  say(
    `${QUICK ? 'quick' : 'full'} run: ${plan.rounds} round(s) of ${plan.seconds} s per case${PINNED ? ', servers on CPU 1, load on CPU 0' : ', unpinned'}`,
  )
  const peersInstalled = spawnSync(bunBin, ['install', '--frozen-lockfile', '--silent'], {
    cwd: join(ROOT, 'bench/peers'),
    stdio: 'inherit',
  })
  if (peersInstalled.status !== 0) throw new Error('bun install in bench/peers failed')

  const pg = await startPostgres({ timeoutMs: 120_000 })
  cleanups.push(() => pg.stop())
  const redis = await startRedisServer()
  cleanups.push(() => redis.stop())
  const rest = await startUpstashRest({ redisPort: redis.port, token: 'bench-upstash-token', connections: 2 })
  cleanups.push(() => rest.close())

  const small = await createMigratedDatabase(pg, 'bench_small')
  const big = await createMigratedDatabase(pg, 'bench_big')
  seed(small, 1_000)
  seed(big, plan.big)
  const sql = postgres(small, { max: 2, onnotice: () => {} })
  const bigSql = postgres(big, { max: 1, onnotice: () => {} })
  cleanups.push(async () => {
    await sql.end({ timeout: 5 })
    await bigSql.end({ timeout: 5 })
  })
  // Stock that never runs out, for checkout.
  await sql`update products set stock = 1000000000`
  const [hot] = await sql<{ id: string }[]>`select id from products where active order by id limit 1 offset 500`
  const checkoutProducts = (await sql<{ id: string }[]>`select id from products where active order by id limit 100`).map((r) => r.id)

  const env = {
    NODE_ENV: 'production',
    JWT_SECRET: SECRET,
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
    RATE_LIMIT_AUTH: '100000000/60',
  }
  const upstash = { UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: rest.token }
  const noL1 = { CACHE_L1_MAX_ENTRIES: '0' }
  // Each runtime as production runs it: Bun runs the sources, Node the bundle (`./run build:node`, as in the Docker image).
  const edgeshop = (runtime: 'bun' | 'node') =>
    runtime === 'bun'
      ? [bunBin, 'src/runtime/bun.ts']
      : [
          'env',
          'MALLOC_ARENA_MAX=2',
          'MALLOC_MMAP_THRESHOLD_=131072',
          'NODE_OPTIONS=--max-semi-space-size=8 --max-old-space-size=256',
          nodeBin,
          'dist/runtime/node.mjs',
        ]
  const builtNode = spawnSync(bunBin, ['run', 'build:node'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] })
  if (builtNode.status !== 0) throw new Error('bun run build:node failed')

  say('starting servers')
  const servers = {
    bun: await serve('edgeshop-bun', edgeshop('bun'), { ...env, DATABASE_URL: small, DATABASE_POOL_MAX: String(CHECKOUT_CONNECTIONS) }),
    node: await serve('edgeshop-node', edgeshop('node'), { ...env, DATABASE_URL: small, DATABASE_POOL_MAX: String(CHECKOUT_CONNECTIONS) }),
    // Logins on servers of their own: argon2id takes 19 MiB per hash in flight, which would hide what reads and checkouts use.
    bunLogin: await serve('edgeshop-bun-login', edgeshop('bun'), { ...env, DATABASE_URL: small }),
    nodeLogin: await serve('edgeshop-node-login', edgeshop('node'), { ...env, DATABASE_URL: small }),
    bunL2: await serve('edgeshop-bun-l2', edgeshop('bun'), { ...env, ...upstash, ...noL1, DATABASE_URL: small }),
    nodeL2: await serve('edgeshop-node-l2', edgeshop('node'), { ...env, ...upstash, ...noL1, DATABASE_URL: small }),
    bunDb: await serve('edgeshop-bun-db', edgeshop('bun'), { ...env, ...noL1, DATABASE_URL: small }),
    nodeDb: await serve('edgeshop-node-db', edgeshop('node'), { ...env, ...noL1, DATABASE_URL: small }),
    bunBig: await serve('edgeshop-bun-big', edgeshop('bun'), { ...env, ...noL1, DATABASE_URL: big }),
  }
  const hotPath = `/v1/products/${hot!.id}`
  const answer = await fetch(servers.bun.url + hotPath)
  const body = await answer.text()
  if (answer.status !== 200) throw new Error(`the hot product answered ${answer.status}`)
  const peerEnv = { DATABASE_URL: small, REDIS_URL: redis.url }
  // The headers edgeshop answers with, for the limit servers that send them too; the server adds Date and the length itself.
  const apiHeaders = JSON.stringify(
    Object.fromEntries(
      [...answer.headers].filter(([name]) => !/^(date|content-length|connection|keep-alive|transfer-encoding)$/.test(name)),
    ),
  )
  const limits = {
    bun: await serve('limit-bun', [bunBin, 'bench/limit/bun.ts'], { BODY: body }),
    node: await serve('limit-node', [nodeBin, 'bench/limit/node.mjs'], { BODY: body }),
    bunHeaders: await serve('limit-bun-headers', [bunBin, 'bench/limit/bun.ts'], { BODY: body, HEADERS: apiHeaders }),
    nodeHeaders: await serve('limit-node-headers', [nodeBin, 'bench/limit/node.mjs'], { BODY: body, HEADERS: apiHeaders }),
  }
  const peers = {
    express: await serve('express', [nodeBin, 'bench/peers/express.mjs'], peerEnv),
    fastify: await serve('fastify', [nodeBin, 'bench/peers/fastify.mjs'], peerEnv),
    elysia: await serve('elysia', [bunBin, 'bench/peers/elysia.ts'], peerEnv),
  }
  for (const [name, server] of Object.entries({ ...limits, ...peers })) {
    const got = await (await fetch(server.url + hotPath)).text()
    if (got !== body) throw new Error(`${name} does not answer the same bytes as edgeshop:\n${got}\n${body}`)
  }

  // Customers for login, checkout and the orders scale case.
  const customers = await makeCustomers(servers.bun.url, sql)
  const deep = await bigSql<
    { id: string }[]
  >`select id from products where active order by id desc offset ${Math.floor(plan.big * 0.9)} limit 1`
  const deepSmall = await sql<{ id: string }[]>`select id from products where active order by id desc offset 900 limit 1`
  const bigHot = await bigSql<{ id: string }[]>`select id from products where active order by id limit 1 offset ${Math.floor(plan.big / 2)}`

  const loginScript = luaPost('/v1/auth/login', JSON.stringify({ email: customers.login.email, password: CUSTOMER_PASSWORD }), {})
  const checkoutScript = async (url: string) => {
    const token = await login(url, customers.checkout.email)
    return luaCheckout(token, checkoutProducts)
  }
  const ordersScript = async (email: string) =>
    luaGet('/v1/orders?limit=20', { Authorization: `Bearer ${await login(servers.bunDb.url, email)}` })
  const checkoutSql = writePgbenchScript()
  await sql`create table if not exists bench_products (n int primary key, id uuid not null)`
  await sql`insert into bench_products select row_number() over (order by id), id from products where id = any(${checkoutProducts}::uuid[]) on conflict do nothing`

  interface Case {
    scenario: string
    name: string
    run: (seconds: number) => Promise<Measurement>
  }
  /** A wrk case; `script` (a Lua file, or one made just before each run: tokens expire) sets the request. */
  const load =
    (server: Server, path: string, connections: number, script?: string | (() => Promise<string>)) => async (seconds: number) => {
      const file = typeof script === 'function' ? await script() : script
      return alone(server, () => wrk(server.url + path, { connections, seconds, script: file }))
    }
  const get = (server: Server, path: string, connections = HOT_CONNECTIONS) => load(server, path, connections)
  const steadyScript = luaSteady(STEADY_PAUSE_MS)
  const steady = (server: Server) => load(server, hotPath, HOT_CONNECTIONS, steadyScript)
  // Checkout compares a client of the database with the database's own limit for the same transaction. The
  // database gets CPU 0 (wrk shares it: a few percent of a core at these rates) and its client CPU 1, edgeshop
  // or pgbench alike, as an application server and its database run on machines of their own. Floating over both
  // cores, PostgreSQL's backends were woken onto the CPU of the process that woke them: on edgeshop's, where
  // they took turns with it, while pgbench, a light client, left them nearly two cores.
  const [{ dir: dataDir }] = (await sql`select current_setting('data_directory') as dir`) as unknown as [{ dir: string }]
  const databaseApart =
    (run: (seconds: number) => Promise<Measurement>) =>
    async (seconds: number): Promise<Measurement> => {
      if (!PINNED) return run(seconds)
      placeDatabase(dataDir, '0')
      try {
        return await run(seconds)
      } finally {
        placeDatabase(dataDir, `0-${availableParallelism() - 1}`)
      }
    }
  const cases: Case[] = [
    { scenario: 'limit', name: 'Bun.serve', run: get(limits.bun, hotPath) },
    { scenario: 'limit', name: 'node:http', run: get(limits.node, hotPath) },
    { scenario: 'limit', name: 'Bun.serve, API headers', run: get(limits.bunHeaders, hotPath) },
    { scenario: 'limit', name: 'node:http, API headers', run: get(limits.nodeHeaders, hotPath) },
    { scenario: 'hot', name: 'edgeshop Bun', run: get(servers.bun, hotPath) },
    { scenario: 'hot', name: 'edgeshop Node', run: get(servers.node, hotPath) },
    { scenario: 'steady', name: 'Bun.serve', run: steady(limits.bun) },
    { scenario: 'steady', name: 'edgeshop Bun', run: steady(servers.bun) },
    { scenario: 'steady', name: 'node:http', run: steady(limits.node) },
    { scenario: 'steady', name: 'edgeshop Node', run: steady(servers.node) },
    { scenario: 'peers', name: 'Elysia + Bun Redis', run: get(peers.elysia, hotPath) },
    { scenario: 'peers', name: 'Fastify + ioredis', run: get(peers.fastify, hotPath) },
    { scenario: 'peers', name: 'Express + pg + ioredis', run: get(peers.express, hotPath) },
    { scenario: 'miss', name: 'Bun, Redis hit', run: get(servers.bunL2, hotPath) },
    { scenario: 'miss', name: 'Node, Redis hit', run: get(servers.nodeL2, hotPath) },
    { scenario: 'miss', name: 'Bun, Postgres', run: get(servers.bunDb, hotPath, DB_CONNECTIONS) },
    { scenario: 'miss', name: 'Node, Postgres', run: get(servers.nodeDb, hotPath, DB_CONNECTIONS) },
    { scenario: 'list', name: 'Bun, page 1', run: get(servers.bun, '/v1/products?limit=20') },
    { scenario: 'list', name: 'Node, page 1', run: get(servers.node, '/v1/products?limit=20') },
    { scenario: 'login', name: 'Bun', run: load(servers.bunLogin, '/v1/auth/login', DB_CONNECTIONS, loginScript) },
    { scenario: 'login', name: 'Node', run: load(servers.nodeLogin, '/v1/auth/login', DB_CONNECTIONS, loginScript) },
    {
      scenario: 'checkout',
      name: 'pgbench, same SQL',
      run: databaseApart((seconds) =>
        alone(undefined, () =>
          pgbench(small, checkoutSql, {
            clients: CHECKOUT_CONNECTIONS,
            seconds,
            vars: { user: customers.checkout.id, products: String(checkoutProducts.length) },
          }),
        ),
      ),
    },
    {
      scenario: 'checkout',
      name: 'edgeshop Bun',
      run: databaseApart(load(servers.bun, '/v1/orders', CHECKOUT_CONNECTIONS, () => checkoutScript(servers.bun.url))),
    },
    {
      scenario: 'checkout',
      name: 'edgeshop Node',
      run: databaseApart(load(servers.node, '/v1/orders', CHECKOUT_CONNECTIONS, () => checkoutScript(servers.node.url))),
    },
    { scenario: 'scale', name: 'page 1, 1k', run: get(servers.bunDb, '/v1/products?limit=20', DB_CONNECTIONS) },
    { scenario: 'scale', name: `page 1, ${fmtCount(plan.big)}`, run: get(servers.bunBig, '/v1/products?limit=20', DB_CONNECTIONS) },
    {
      scenario: 'scale',
      name: 'deep page, 1k',
      run: get(servers.bunDb, `/v1/products?limit=20&cursor=${encodeCursor(deepSmall[0]!.id)}`, DB_CONNECTIONS),
    },
    {
      scenario: 'scale',
      name: `deep page, ${fmtCount(plan.big)}`,
      run: get(servers.bunBig, `/v1/products?limit=20&cursor=${encodeCursor(deep[0]!.id)}`, DB_CONNECTIONS),
    },
    { scenario: 'scale', name: 'by id, 1k', run: get(servers.bunDb, hotPath, DB_CONNECTIONS) },
    { scenario: 'scale', name: `by id, ${fmtCount(plan.big)}`, run: get(servers.bunBig, `/v1/products/${bigHot[0]!.id}`, DB_CONNECTIONS) },
    {
      scenario: 'scale',
      name: 'orders, 10',
      run: load(servers.bunDb, '/v1/orders?limit=20', DB_CONNECTIONS, () => ordersScript(customers.few.email)),
    },
    {
      scenario: 'scale',
      name: `orders, ${fmtCount(plan.manyOrders)}`,
      run: load(servers.bunDb, '/v1/orders?limit=20', DB_CONNECTIONS, () => ordersScript(customers.many.email)),
    },
  ]

  if (PINNED && has('chrt')) {
    busy = spawn('taskset', ['-c', '1', 'chrt', '-i', '0', 'sh', '-c', 'while :; do :; done'], { stdio: 'ignore' })
    cleanups.push(() => void busy?.kill('SIGKILL'))
  }

  say(`warming up ${cases.length} cases`)
  // A warm-up is the same load for a shorter time (JIT, pools, caches); its figures are thrown away.
  for (const c of cases) await c.run(plan.warmSeconds)
  const samples = new Map<Case, Measurement[]>(cases.map((c) => [c, []]))
  /** Resident memory of the two main edgeshop servers after each scenario's runs (the largest seen), in MB. */
  const rssAfter: Record<string, number> = {}
  for (let round = 1; round <= plan.rounds; round++) {
    say(`round ${round} of ${plan.rounds}`)
    // Interleaved: each round visits every case once, so a drift of the machine spreads over all of them.
    const order = round % 2 === 1 ? cases : [...cases].reverse()
    for (const c of order) {
      const m = await c.run(plan.seconds)
      samples.get(c)!.push(m)
      for (const [name, server] of [
        ['edgeshop Bun', servers.bun],
        ['edgeshop Node', servers.node],
      ] as const) {
        const mb = rssMb(server.pid)
        const key = `${name}, after ${c.scenario}`
        if (mb !== null) rssAfter[key] = Math.max(rssAfter[key] ?? 0, mb)
      }
      say(`  ${c.scenario.padEnd(8)} ${c.name.padEnd(24)} ${Math.round(m.rps).toString().padStart(7)} req/s  p99 ${m.p99.toFixed(2)} ms`)
    }
  }
  busy?.kill('SIGKILL')

  const memory = {
    'edgeshop Bun': peakRssMb(servers.bun.pid),
    'edgeshop Node': peakRssMb(servers.node.pid),
    'edgeshop Bun, logins': peakRssMb(servers.bunLogin.pid),
    'edgeshop Node, logins': peakRssMb(servers.nodeLogin.pid),
    'Bun.serve': peakRssMb(limits.bun.pid),
    'node:http': peakRssMb(limits.node.pid),
    'Elysia + Bun Redis': peakRssMb(peers.elysia.pid),
    'Fastify + ioredis': peakRssMb(peers.fastify.pid),
    'Express + pg + ioredis': peakRssMb(peers.express.pid),
  }
  const checkoutCheck = await sql<
    { orders: number; negative: number }[]
  >`select (select count(*)::int from orders) as orders, (select count(*)::int from products where stock < 0) as negative`
  if (checkoutCheck[0]!.negative > 0) throw new Error('a product has negative stock after the checkout runs')

  const worker = await measureWorker()
  const results: BenchResults = {
    date: new Date().toISOString(),
    quick: QUICK,
    durationSeconds: Math.round((Date.now() - started) / 1000),
    command: QUICK ? './run bench --quick' : './run bench',
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), pinned: PINNED },
    versions: versions(),
    plan: {
      ...plan,
      hotConnections: HOT_CONNECTIONS,
      steadyPauseMs: STEADY_PAUSE_MS,
      dbConnections: DB_CONNECTIONS,
      checkoutConnections: CHECKOUT_CONNECTIONS,
    },
    answerBytes: Buffer.byteLength(body),
    cases: cases.map((c): CaseResult => {
      const runs = samples.get(c)!
      return { scenario: c.scenario, name: c.name, runs, median: medianOf(runs) }
    }),
    memoryMb: memory,
    rssAfterMb: rssAfter,
    worker,
  }
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  const file = join(ROOT, 'bench/results', QUICK ? 'quick.json' : `${results.date.slice(0, 10)}.json`)
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`)
  say(`wrote ${file}`)
  const summary = writeReport(results, { write: !QUICK })
  process.stdout.write(summary)
}

function medianOf(runs: Measurement[]): Measurement {
  const med = (xs: number[]) => {
    const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
    if (s.length === 0) return Number.NaN
    return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
  }
  return {
    rps: med(runs.map((r) => r.rps)),
    p50: med(runs.map((r) => r.p50)),
    p99: med(runs.map((r) => r.p99)),
    ...(runs.some((r) => r.p999 !== undefined) ? { p999: med(runs.map((r) => r.p999 ?? Number.NaN)) } : {}),
    non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
  }
}

function fmtCount(n: number): string {
  return n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n)
}

function seed(url: string, products: number): void {
  const t = Date.now()
  const res = spawnSync(bunBin, ['scripts/seed.ts', '--products', String(products)], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: url, ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (res.status !== 0) throw new Error(`seeding failed: ${res.stderr}`)
  say(`seeded ${fmtCount(products)} products in ${((Date.now() - t) / 1000).toFixed(1)} s`)
}

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
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

async function login(url: string, email: string): Promise<string> {
  const res = await post(`${url}/v1/auth/login`, { email, password: CUSTOMER_PASSWORD })
  if (res.status !== 200) throw new Error(`login of ${email} answered ${res.status}`)
  return res.body.accessToken as string
}

/** Customers: one that logs in, one that checks out, one with a few orders and one with many. */
async function makeCustomers(url: string, sql: postgres.Sql) {
  const make = async (tag: string) => {
    const email = `bench-${tag}@example.test`
    const res = await post(`${url}/v1/auth/signup`, { email, password: CUSTOMER_PASSWORD, name: `Bench ${tag}` })
    if (res.status !== 201) throw new Error(`signup of ${email} answered ${res.status}`)
    return { email, id: (res.body.user as { id: string }).id }
  }
  const customers = { login: await make('login'), checkout: await make('checkout'), few: await make('few'), many: await make('many') }
  // Orders written straight into the tables (the API would take minutes for 100k): time-ordered ids, one line each.
  const addOrders = async (userId: string, n: number) => {
    await sql.unsafe(
      `with p as (select id, sku, name, price_cents from products order by id limit 1),
       o as (
         insert into orders (id, user_id, status, total_cents, currency, created_at, updated_at, expires_at)
         select (lpad(to_hex((extract(epoch from now()) * 1000)::bigint - $2 + g), 12, '0') || '7' || substr(md5(g::text || $1), 1, 19))::uuid,
                $1::uuid, 'fulfilled', p.price_cents, 'USD', now(), now(), now()
         from generate_series(1, $2::int) g, p
         returning id
       )
       insert into order_items (order_id, product_id, sku, name, unit_price_cents, quantity)
       select o.id, p.id, p.sku, p.name, p.price_cents, 1 from o, p`,
      [userId, n],
    )
  }
  await addOrders(customers.few.id, 10)
  await addOrders(customers.many.id, plan.manyOrders)
  await sql`analyze`
  return customers
}

function luaString(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

function luaHeaders(headers: Record<string, string>): string {
  return `{${Object.entries(headers)
    .map(([k, v]) => `[${luaString(k)}] = ${luaString(v)}`)
    .join(', ')}}`
}

function writeLua(name: string, text: string): string {
  const file = join(scratch, `${name}-${Date.now()}-${Math.random().toString(36).slice(2)}.lua`)
  writeFileSync(file, text)
  return file
}

function luaPost(path: string, body: string, headers: Record<string, string>): string {
  return writeLua(
    'post',
    `wrk.method = "POST"\nwrk.path = ${luaString(path)}\nwrk.body = ${luaString(body)}\nwrk.headers = ${luaHeaders({ 'Content-Type': 'application/json', ...headers })}\n`,
  )
}

function luaGet(path: string, headers: Record<string, string>): string {
  return writeLua('get', `wrk.method = "GET"\nwrk.path = ${luaString(path)}\nwrk.headers = ${luaHeaders(headers)}\n`)
}

/**
 * A GET at a steady rate: each connection thinks after every answer, for an
 * exponentially distributed time of mean `pauseMs` (whole milliseconds, as
 * wrk's timers count); at the end the script prints the 99.9th percentile of
 * wrk's latency histogram, which `--latency` leaves out.
 */
function luaSteady(pauseMs: number): string {
  return writeLua(
    'steady',
    `local log, random = math.log, math.random
math.randomseed(os.time())
delay = function() return math.floor(-log(1 - random()) * ${pauseMs} + 0.5) end
done = function(summary, latency, requests)
  io.write(string.format("p99.9 %.3f ms\\n", latency:percentile(99.9) / 1000))
end
`,
  )
}

/** POST /v1/orders, one line each, rotating over the products, a fresh Idempotency-Key per request. */
function luaCheckout(token: string, products: string[]): string {
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

/**
 * The SQL one checkout sends, for pgbench: BEGIN; the idempotency lock and
 * lookup and the checkout statement (its rows locked in id order) pipelined; the
 * stored answer (one statement: an expired one dropped, the new one
 * inserted) pipelined with the COMMIT.
 * Time-ordered ids like the application's; products from a small map table.
 */
function writePgbenchScript(): string {
  const v7 = `(lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') || '7' || substr(md5(random()::text), 1, 19))::uuid`
  const answer = JSON.stringify({
    id: '00000000-0000-7000-8000-000000000000',
    status: 'pending_payment',
    items: [],
    totalCents: 1999,
  }).padEnd(520, ' ')
  return writeLua(
    'checkout-sql',
    `\\set i random(1, :products)
\\set r random(1, 9000000000000000000)
BEGIN;
\\startpipeline
select l.locked, k.fingerprint, k.status, k.body, k.headers::text as headers from (select pg_try_advisory_xact_lock(hashtextextended(:user::text || '/pgb-' || :client_id::text || '-' || :r::text, 7172616102)) as locked) l left join idempotency_keys k on l.locked and k.user_id = :user::uuid and k.key = 'pgb-' || :client_id::text || '-' || :r::text and k.expires_at > now();
with lines as (select * from unnest(array[(select id from bench_products where n = :i::int)], array[1]::int[]) as t(id, qty)), locked as materialized (select p.id, l.qty from products p join lines l on l.id = p.id where p.active and p.stock >= l.qty order by p.id for update of p), taken as (update products p set stock = p.stock - l.qty, version = p.version + 1, updated_at = now() from locked l where p.id = l.id and p.stock >= l.qty returning p.id, p.sku, p.name, p.price_cents, p.version, l.qty), placed as (insert into orders (id, user_id, status, total_cents, currency, created_at, updated_at, expires_at) select ${v7}, :user::uuid, 'pending_payment', sum(price_cents * qty), 'USD', now(), now(), now() + interval '15 minutes' from taken having count(*) = 1 returning id), items as (insert into order_items (order_id, product_id, sku, name, unit_price_cents, quantity) select placed.id, t.id, t.sku, t.name, t.price_cents, t.qty from placed, taken t), expiry as (insert into jobs (id, name, payload, max_attempts, run_at, created_at, updated_at) select ${v7}, 'order.expire', jsonb_build_object('orderId', placed.id), 10, now() + interval '15 minutes', now(), now() from placed) select id, sku, name, price_cents, version from taken;
\\endpipeline
\\startpipeline
with expired as (delete from idempotency_keys where user_id = :user::uuid and key = 'pgb-' || :client_id::text || '-' || :r::text and expires_at <= now() returning 1) insert into idempotency_keys (user_id, key, fingerprint, status, body, headers, expires_at, created_at) select :user::uuid, 'pgb-' || :client_id::text || '-' || :r::text, md5(:r::text), 201, '${answer}', '{"content-type":"application/json","location":"/v1/orders/x"}', now() + interval '25 hours', now() from (select count(*) from expired) as made_way;
COMMIT;
\\endpipeline
`,
  )
}

/** Worker bundle size (minified, gzipped) and cold start in workerd (Miniflare), against an empty worker. */
async function measureWorker() {
  const out = join(scratch, 'worker')
  const built = spawnSync(join(ROOT, 'node_modules/.bin/wrangler'), ['deploy', '--dry-run', '--minify', '--outdir', out], {
    cwd: ROOT,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: '1', WRANGLER_LOG_PATH: scratch },
    encoding: 'utf8',
  })
  if (built.status !== 0) throw new Error(`wrangler could not build the worker: ${built.stderr}`)
  const script = join(out, 'worker.js')
  const bytes = statSync(script).size
  const gzipBytes = gzipSync(readFileSync(script), { level: 9 }).length
  // workerd itself, as Cloudflare runs it: a process from nothing to the first answer of /healthz.
  const workerd = join(ROOT, 'node_modules/@cloudflare/workerd-linux-64/bin/workerd')
  const coldStart = async (name: string, module: string, bindings: Record<string, string>) => {
    const dir = join(scratch, `workerd-${name}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'worker.js'), readFileSync(module))
    const times: number[] = []
    for (let i = 0; i < (QUICK ? 1 : 5); i++) {
      const port = await freePort()
      writeFileSync(
        join(dir, 'config.capnp'),
        `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .w) ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "main") ],
);
const w :Workerd.Worker = (
  modules = [ (name = "worker.js", esModule = embed "worker.js") ],
  compatibilityDate = "2026-11-01",
  compatibilityFlags = ["nodejs_compat"],
  bindings = [ ${Object.entries(bindings)
    .map(([k, v]) => `(name = ${JSON.stringify(k)}, text = ${JSON.stringify(v)})`)
    .join(', ')} ],
);
`,
      )
      const t = performance.now()
      const child = spawn(workerd, ['serve', join(dir, 'config.capnp')], { stdio: ['ignore', 'ignore', 'pipe'] })
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
        times.push(performance.now() - t)
      } finally {
        child.kill('SIGKILL')
      }
    }
    times.sort((a, b) => a - b)
    return Math.round(times[Math.floor(times.length / 2)]!)
  }
  const empty = join(scratch, 'empty.js')
  writeFileSync(empty, 'export default { fetch: () => new Response("ok") }\n')
  const edgeshopMs = await coldStart('edgeshop', script, {
    JWT_SECRET: SECRET,
    DATABASE_URL: 'postgres://bench@127.0.0.1:9/none',
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
    LOG_LEVEL: 'warn',
  })
  const emptyMs = await coldStart('empty', empty, {})
  say(`worker: ${bytes} B minified, ${gzipBytes} B gzipped; cold start ${edgeshopMs} ms (empty worker ${emptyMs} ms)`)
  return { bytes, gzipBytes, coldStartMs: edgeshopMs, emptyWorkerColdStartMs: emptyMs }
}

function versions(): Record<string, string> {
  const run = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' })
    return `${r.stdout}${r.stderr}`.trim().split('\n')[0] ?? ''
  }
  const pkg = (name: string, dir = ROOT) => {
    try {
      return JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version as string
    } catch {
      return 'missing'
    }
  }
  const peers = join(ROOT, 'bench/peers')
  return {
    edgeshop: run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']),
    node: process.version,
    bun: run(bunBin, ['--version']),
    postgres: run(join(findPostgresBin(), 'postgres'), ['--version']),
    redis: run('redis-server', ['--version']),
    wrk: run('wrk', ['--version']).replace(/ \[.*$/, ''),
    hono: pkg('hono'),
    'drizzle-orm': pkg('drizzle-orm'),
    postgres_js: pkg('postgres'),
    express: pkg('express', peers),
    fastify: pkg('fastify', peers),
    elysia: pkg('elysia', peers),
    ioredis: pkg('ioredis', peers),
    pg: pkg('pg', peers),
  }
}

async function cleanup(): Promise<void> {
  busy?.kill('SIGKILL')
  for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {})
}

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
