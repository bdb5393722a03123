/**
 * `./run bench [--quick] [--only workerd|replicas]`: edgeshop measured side by side with the
 * runtime's own limit and with the peers, in one run, as ratios.
 *
 * It starts what it needs — PostgreSQL, redis-server with the Upstash REST
 * stand-in in front of it, edgeshop on Bun and on Node in Postgres mode (in
 * several cache configurations), the limit servers of bench/limit/ and the
 * peers of bench/peers/ — seeds the data, drives each case with `wrk`,
 * runs `pgbench` with checkout's SQL, builds the Worker bundle and serves it
 * in workerd beside a bare worker (bench/workerd.ts), measures the list page
 * with one streaming read replica against the primary alone (bench/replicas.ts),
 * holds thousands of idle order event streams on each runtime for their memory
 * and the latency of the events that do flow (bench/streams.ts), then stops everything.
 * Traffic stays on 127.0.0.1.
 *
 * Method (see docs/BENCHMARKS.md): servers pinned to CPU 1, `wrk` to CPU 0
 * (for checkout, PostgreSQL on CPU 0 and its client, edgeshop or `pgbench`,
 * on CPU 1), a SCHED_IDLE busy loop on CPU 1 so the VM's core does
 * not sleep between requests, every case measured once per round with the
 * rounds interleaved, and the median of the rounds reported.
 *
 * Writes bench/results/<date>.json and regenerates docs/BENCHMARKS.md
 * (bench/report.ts). `--quick` (one short round, a small "large" catalog)
 * checks that the harness works in two and a half to three minutes; it writes
 * its figures to bench/results/quick.json and leaves the report alone.
 * `--only workerd` runs the Workers scenario alone (bench/results/workerd-<date>.json
 * and its section of the report; with `--quick`, a smoke test of it);
 * `--only replicas` the read-replica scenario the same way, `--only streams` the idle-stream one.
 *
 * `./run bench --against <git-rev>` compares that revision with the working
 * tree instead (bench/ab.ts); the pieces both use are in bench/harness.ts.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, loadavg } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { encodeCursor } from '../src/core/page.ts'
import { ROOT } from '../test/support/app-server.ts'
import { findPostgresBin, startPostgres } from '../test/support/postgres.ts'
import { startRedisServer } from '../test/support/redis-server.ts'
import { runCommand } from '../test/support/run-command.ts'
import { createMigratedDatabase } from '../test/support/services.ts'
import { startUpstashRest } from '../test/support/upstash-rest.ts'
import { abMain } from './ab.ts'
import {
  alone,
  answerHeaders,
  buildNode,
  bunBin,
  type Case,
  CHECKOUT_CONNECTIONS,
  CUSTOMER_PASSWORD,
  cleanups,
  databaseApart,
  edgeshopCommand,
  fmtCount,
  HOT_CONNECTIONS,
  has,
  login,
  luaCheckout,
  luaHeaders,
  luaPost,
  luaString,
  nodeBin,
  PINNED,
  rssKib,
  runMain,
  SERVER_CPU,
  type Server,
  say,
  seed,
  serve,
  serverEnv,
  signup,
  startBusyLoop,
  writeLua,
  wrk,
} from './harness.ts'
import { REPLICA_CONNECTIONS, replicasScenario, WRITES_PER_SECOND } from './replicas.ts'
import { writeReport } from './report.ts'
import { type BenchResults, type CaseResult, type Measurement, median } from './results.ts'
import { streamsPlan, streamsScenario } from './streams.ts'
import { workerdScenario } from './workerd.ts'

const QUICK = process.argv.includes('--quick')
/** `--only workerd`, `--only replicas`, `--only streams`: that scenario alone, with only what it needs started (for iterating on it, or its figures alone). */
const ONLY = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined
const plan = QUICK
  ? { seconds: 1, warmSeconds: 1, rounds: 1, big: 20_000, manyOrders: 2_000 }
  : { seconds: 6, warmSeconds: 3, rounds: 3, big: 1_000_000, manyOrders: 100_000 }
const DB_CONNECTIONS = 16
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
const started = Date.now()

/** Resident memory of a process now (VmRSS), in MB. */
function rssMb(pid: number): number | null {
  const kib = rssKib(pid)
  return kib === null ? null : Math.round(kib / 1024)
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

// ---------------------------------------------------------------- load

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

async function main(): Promise<void> {
  if (!has('wrk')) throw new Error('wrk is needed: apt-get install wrk')
  if (ONLY !== undefined && ONLY !== 'workerd' && ONLY !== 'replicas' && ONLY !== 'streams')
    throw new Error(`--only takes the scenario workerd, replicas or streams, not ${ONLY ?? 'nothing'}`)
  say(
    `${QUICK ? 'quick' : 'full'} run${ONLY ? ` of ${ONLY} alone` : ''}${ONLY === 'streams' ? '' : `: ${plan.rounds} round(s) of ${plan.seconds} s per case`}${PINNED ? ', servers on CPU 1, load on CPU 0' : ', unpinned'}`,
  )
  if (!ONLY) {
    const peersInstalled = spawnSync(bunBin, ['install', '--frozen-lockfile', '--silent'], {
      cwd: join(ROOT, 'bench/peers'),
      stdio: 'inherit',
    })
    if (peersInstalled.status !== 0) throw new Error('bun install in bench/peers failed')
  }
  if (ONLY === 'replicas') {
    buildNode()
    const replicas = await replicasScenario()
    return finish(replicas.cases, await measure(replicas.cases), {
      answerBytes: replicas.answerBytes,
      memoryMb: {},
      rssAfterMb: {},
      versions: versions(),
    })
  }

  const pg = await startPostgres({ timeoutMs: 120_000 })
  cleanups.push(() => pg.stop())
  if (ONLY === 'streams') {
    buildNode()
    return finish([], new Map(), {
      answerBytes: 0,
      memoryMb: {},
      rssAfterMb: {},
      streams: await streamsScenario(pg, QUICK),
      versions: versions(),
    })
  }
  const redis = await startRedisServer()
  cleanups.push(() => redis.stop())
  const rest = await startUpstashRest({ redisPort: redis.port, token: 'bench-upstash-token', connections: 2 })
  cleanups.push(() => rest.close())

  const small = await createMigratedDatabase(pg, 'bench_small')
  seed(small, 1_000)
  const sql = postgres(small, { max: 2, onnotice: () => {} })
  cleanups.push(() => sql.end({ timeout: 5 }))
  // Stock that never runs out, for checkout.
  await sql`update products set stock = 1000000000`
  const [hot] = await sql<{ id: string }[]>`select id from products where active order by id limit 1 offset 500`
  const checkoutProducts = (await sql<{ id: string }[]>`select id from products where active order by id limit 100`).map((r) => r.id)
  const hotPath = `/v1/products/${hot!.id}`
  const [{ dir: dataDir }] = (await sql`select current_setting('data_directory') as dir`) as unknown as [{ dir: string }]
  const upstash = { UPSTASH_REDIS_REST_URL: rest.url, UPSTASH_REDIS_REST_TOKEN: rest.token }
  const sessions = async () => {
    // Ended sessions, and those running now (counted at their end): every connection made so far.
    const [row] = await sql<{ n: number }[]>`select (select sessions from pg_stat_database where datname = current_database())
      + (select count(*) from pg_stat_activity where datname = current_database()) as n`
    return Number(row!.n)
  }
  const workers = await workerdScenario({
    databaseUrl: small,
    dataDir,
    sessions,
    upstash,
    hotPath,
    products: checkoutProducts,
    quick: QUICK,
  })
  if (ONLY) {
    const samples = await measure(workers.cases)
    await checkStock(sql)
    return finish(workers.cases, samples, {
      answerBytes: workers.answerBytes,
      memoryMb: {},
      rssAfterMb: {},
      worker: workers.worker,
      versions: { ...versions(), workerd: workers.version },
    })
  }

  const big = await createMigratedDatabase(pg, 'bench_big')
  seed(big, plan.big)
  const bigSql = postgres(big, { max: 1, onnotice: () => {} })
  cleanups.push(() => bigSql.end({ timeout: 5 }))

  const env = serverEnv
  const noL1 = { CACHE_L1_MAX_ENTRIES: '0' }
  buildNode()
  const replicas = await replicasScenario()

  say('starting servers')
  const servers = {
    bun: await serve('edgeshop-bun', edgeshopCommand('bun'), {
      ...env,
      DATABASE_URL: small,
      DATABASE_POOL_MAX: String(CHECKOUT_CONNECTIONS),
    }),
    node: await serve('edgeshop-node', edgeshopCommand('node'), {
      ...env,
      DATABASE_URL: small,
      DATABASE_POOL_MAX: String(CHECKOUT_CONNECTIONS),
    }),
    // Logins on servers of their own: argon2id takes 19 MiB per hash in flight, which would hide what reads and checkouts use.
    bunLogin: await serve('edgeshop-bun-login', edgeshopCommand('bun'), { ...env, DATABASE_URL: small }),
    nodeLogin: await serve('edgeshop-node-login', edgeshopCommand('node'), { ...env, DATABASE_URL: small }),
    bunL2: await serve('edgeshop-bun-l2', edgeshopCommand('bun'), { ...env, ...upstash, ...noL1, DATABASE_URL: small }),
    nodeL2: await serve('edgeshop-node-l2', edgeshopCommand('node'), { ...env, ...upstash, ...noL1, DATABASE_URL: small }),
    bunDb: await serve('edgeshop-bun-db', edgeshopCommand('bun'), { ...env, ...noL1, DATABASE_URL: small }),
    nodeDb: await serve('edgeshop-node-db', edgeshopCommand('node'), { ...env, ...noL1, DATABASE_URL: small }),
    bunBig: await serve('edgeshop-bun-big', edgeshopCommand('bun'), { ...env, ...noL1, DATABASE_URL: big }),
  }
  const answer = await fetch(servers.bun.url + hotPath)
  const body = await answer.text()
  if (answer.status !== 200) throw new Error(`the hot product answered ${answer.status}`)
  const peerEnv = { DATABASE_URL: small, REDIS_URL: redis.url }
  // The headers edgeshop answers with, for the limit servers that send them too; the server adds Date and the length itself.
  const apiHeaders = JSON.stringify(answerHeaders(answer))
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
  const apart = (run: (seconds: number) => Promise<Measurement>) => databaseApart(dataDir, run)
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
      run: apart((seconds) =>
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
      run: apart(load(servers.bun, '/v1/orders', CHECKOUT_CONNECTIONS, () => checkoutScript(servers.bun.url))),
    },
    {
      scenario: 'checkout',
      name: 'edgeshop Node',
      run: apart(load(servers.node, '/v1/orders', CHECKOUT_CONNECTIONS, () => checkoutScript(servers.node.url))),
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
    ...workers.cases,
    ...replicas.cases,
  ]

  /** Resident memory of the two main edgeshop servers after each scenario's runs (the largest seen), in MB. */
  const rssAfter: Record<string, number> = {}
  const samples = await measure(cases, (c) => {
    for (const [name, server] of [
      ['edgeshop Bun', servers.bun],
      ['edgeshop Node', servers.node],
    ] as const) {
      const mb = rssMb(server.pid)
      const key = `${name}, after ${c.scenario}`
      if (mb !== null) rssAfter[key] = Math.max(rssAfter[key] ?? 0, mb)
    }
  })

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
  await checkStock(sql)
  // Last: its idle streams are measured with every other server paused.
  const streams = await streamsScenario(pg, QUICK)
  finish(cases, samples, {
    answerBytes: Buffer.byteLength(body),
    memoryMb: memory,
    rssAfterMb: rssAfter,
    streams,
    worker: workers.worker,
    versions: { ...versions(), workerd: workers.version },
  })
}

/**
 * Warms every case up, then measures each once per round, the rounds
 * interleaved; `after` runs after each measurement. The SCHED_IDLE busy
 * loop runs throughout.
 */
async function measure(cases: Case[], after: (c: Case) => void = () => {}): Promise<Map<Case, Measurement[]>> {
  const stopBusyLoop = startBusyLoop()
  say(`warming up ${cases.length} cases`)
  // A warm-up is the same load for a shorter time (JIT, pools, caches); its figures are thrown away.
  for (const c of cases) await c.run(plan.warmSeconds)
  const samples = new Map<Case, Measurement[]>(cases.map((c) => [c, []]))
  for (let round = 1; round <= plan.rounds; round++) {
    say(`round ${round} of ${plan.rounds}`)
    // Interleaved: each round visits every case once, so a drift of the machine spreads over all of them.
    const order = round % 2 === 1 ? cases : [...cases].reverse()
    for (const c of order) {
      const m = await c.run(plan.seconds)
      samples.get(c)!.push(m)
      after(c)
      const cpu =
        m.cpuMs === undefined
          ? ''
          : `  CPU ${m.cpuMs.toFixed(2)} ms/req (PostgreSQL ${m.dbCpuMs!.toFixed(2)}, ${m.dbSessions!.toFixed(2)} sessions)`
      say(
        `  ${c.scenario.padEnd(8)} ${c.name.padEnd(24)} ${Math.round(m.rps).toString().padStart(7)} req/s  p99 ${m.p99.toFixed(2)} ms${cpu}`,
      )
    }
  }
  stopBusyLoop()
  return samples
}

/** Checkout's stock invariant after the runs: no product below zero. */
async function checkStock(sql: postgres.Sql): Promise<void> {
  const [check] = await sql<{ negative: number }[]>`select count(*)::int as negative from products where stock < 0`
  if (check!.negative > 0) throw new Error('a product has negative stock after the checkout runs')
}

/** Writes the results file and (but for --quick) the report; prints the targets. */
function finish(
  cases: Case[],
  samples: Map<Case, Measurement[]>,
  rest: Pick<BenchResults, 'answerBytes' | 'memoryMb' | 'rssAfterMb' | 'streams' | 'worker' | 'versions'>,
): void {
  const results: BenchResults = {
    date: new Date().toISOString(),
    quick: QUICK,
    durationSeconds: Math.round((Date.now() - started) / 1000),
    command: `./run bench${QUICK ? ' --quick' : ''}${ONLY ? ` --only ${ONLY}` : ''}`,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), pinned: PINNED, loadAverage: loadavg() },
    plan: {
      ...plan,
      hotConnections: HOT_CONNECTIONS,
      steadyPauseMs: STEADY_PAUSE_MS,
      dbConnections: DB_CONNECTIONS,
      checkoutConnections: CHECKOUT_CONNECTIONS,
      replicaConnections: REPLICA_CONNECTIONS,
      replicaWritesPerSecond: WRITES_PER_SECOND,
      ...(rest.streams ? { idleStreams: streamsPlan(QUICK).streams, streamEvents: streamsPlan(QUICK).events } : {}),
    },
    cases: cases.map((c): CaseResult => {
      const runs = samples.get(c)!
      return { scenario: c.scenario, name: c.name, runs, median: medianOf(runs) }
    }),
    ...rest,
    ...(ONLY ? { only: ONLY } : {}),
  }
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true })
  const file = join(ROOT, 'bench/results', QUICK ? 'quick.json' : `${ONLY ? `${ONLY}-` : ''}${results.date.slice(0, 10)}.json`)
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`)
  say(`wrote ${file}`)
  process.stdout.write(writeReport(results, { write: !QUICK }))
}

function medianOf(runs: Measurement[]): Measurement {
  return {
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    ...(runs.some((r) => r.p999 !== undefined) ? { p999: median(runs.map((r) => r.p999 ?? Number.NaN)) } : {}),
    non2xx: runs.reduce((a, r) => a + r.non2xx, 0),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    ...(runs.some((r) => r.cpuMs !== undefined)
      ? {
          cpuMs: median(runs.map((r) => r.cpuMs ?? Number.NaN)),
          dbCpuMs: median(runs.map((r) => r.dbCpuMs ?? Number.NaN)),
          dbSessions: median(runs.map((r) => r.dbSessions ?? Number.NaN)),
        }
      : {}),
    ...(runs.some((r) => r.writesPerSecond !== undefined)
      ? {
          replicaReads: median(runs.map((r) => r.replicaReads ?? Number.NaN)),
          writesPerSecond: median(runs.map((r) => r.writesPerSecond ?? Number.NaN)),
        }
      : {}),
    ...(runs.some((r) => r.lagMedianMs !== undefined)
      ? {
          lagMedianMs: median(runs.map((r) => r.lagMedianMs ?? Number.NaN)),
          // The largest lag seen in any run, not a median of the runs' largest.
          lagMaxMs: Math.max(Number.NEGATIVE_INFINITY, ...runs.map((r) => r.lagMaxMs ?? Number.NaN).filter(Number.isFinite)),
        }
      : {}),
  }
}

/** Customers: one that logs in, one that checks out, one with a few orders and one with many. */
async function makeCustomers(url: string, sql: postgres.Sql) {
  const make = (tag: string) => signup(url, tag)
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

await runMain(process.argv.includes('--against') ? () => abMain(process.argv.slice(2)) : main)
