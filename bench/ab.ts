/**
 * `./run bench --against <git-rev>`: two builds of edgeshop side by side in
 * one run, A (the revision) and B (the working tree), for the guard rail "the
 * hot read, checkout and the Worker bundle stay within 5 % of the run before
 * the change".
 *
 * A is `git archive <rev>` unpacked into a scratch directory, with the working
 * tree's node_modules when the lockfile, package.json and patches are the
 * same (else `bun install --frozen-lockfile` there). Both are built (the Node
 * bundle, the Worker bundle), each gets a database of its own on one
 * PostgreSQL, migrated and seeded by its own scripts, and a Bun and a Node
 * server. Each case then runs for A and B in turn, A B in odd rounds and B A
 * in even ones, with the settings and the method of bench/run.ts: the hot
 * read with wrk -c64, checkout with wrk -c16 and the database on a core of its
 * own, the measured server alone on its core. Prints a table per case
 * (bench/ab-report.ts) and writes bench/results/ab-<date>.json.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { ROOT } from '../test/support/app-server.ts'
import { type OtlpReceiver, startOtlpReceiver } from '../test/support/otlp-receiver.ts'
import { startPostgres } from '../test/support/postgres.ts'
import { AB_USAGE, type AbOptions, type AbRow, compare, GUARD, guardOutcome, parseAbArgs, renderAb } from './ab-report.ts'
import * as harness from './harness.ts'
import type { Measurement } from './results.ts'

interface Side {
  label: 'A' | 'B'
  /** What the tables call it: the revision and its commit, or the working tree. */
  name: string
  root: string
}

const git = (...args: string[]) => {
  const r = spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' })
  return { ok: r.status === 0, out: r.stdout.trim(), err: r.stderr.trim() }
}

/** The revision's tree in a scratch directory, ready to build and run. */
function materialise(commit: string): string {
  const dir = join(harness.scratchDir(), `rev-${commit.slice(0, 12)}`)
  mkdirSync(dir, { recursive: true })
  const unpacked = spawnSync('sh', ['-c', 'git -C "$1" archive "$2" | tar -x -C "$3"', 'sh', ROOT, commit, dir], {
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  if (unpacked.status !== 0) throw new Error(`git archive ${commit} | tar -x failed`)
  if (existsSync(join(ROOT, '.tools'))) symlinkSync(join(ROOT, '.tools'), join(dir, '.tools'))
  // The same lockfile, manifest and patches install the same node_modules: the working tree's serves.
  if (git('diff', '--quiet', commit, '--', 'bun.lock', 'package.json', 'patches').ok) {
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
    harness.say(`A: ${commit.slice(0, 12)} in ${dir}, with the working tree's node_modules (same lockfile)`)
  } else {
    harness.say(`A: ${commit.slice(0, 12)} in ${dir}; its lockfile differs: bun install --frozen-lockfile`)
    const installed = spawnSync(harness.bunBin, ['install', '--frozen-lockfile'], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] })
    if (installed.status !== 0) throw new Error(`bun install --frozen-lockfile failed for ${commit}`)
  }
  return dir
}

/** Each side's database (migrated and seeded by its own scripts) and its Bun and Node servers. */
async function startSide(side: Side, pg: Awaited<ReturnType<typeof startPostgres>>, settings: Record<string, string>) {
  const url = await pg.createDatabase(`bench_ab_${side.label.toLowerCase()}`)
  const migrated = spawnSync(harness.bunBin, ['scripts/migrate.ts'], {
    cwd: side.root,
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  })
  if (migrated.status !== 0) throw new Error(`${side.label}: migrations failed: ${migrated.stderr}`)
  harness.seed(url, 1_000, side.root)
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  harness.cleanups.push(() => sql.end({ timeout: 5 }))
  // Stock that never runs out, for checkout; the hot product and checkout's products as bench/run.ts picks them.
  await sql`update products set stock = 1000000000`
  const [hot] = await sql<{ id: string }[]>`select id from products where active order by id limit 1 offset 500`
  const products = (await sql<{ id: string }[]>`select id from products where active order by id limit 100`).map((r) => r.id)
  const [{ dir }] = (await sql`select current_setting('data_directory') as dir`) as unknown as [{ dir: string }]
  const env = { ...harness.serverEnv, ...settings, DATABASE_URL: url, DATABASE_POOL_MAX: String(harness.CHECKOUT_CONNECTIONS) }
  const servers = {
    bun: await harness.serve(`edgeshop-bun-${side.label}`, harness.edgeshopCommand('bun'), env, { cwd: side.root }),
    node: await harness.serve(`edgeshop-node-${side.label}`, harness.edgeshopCommand('node'), env, { cwd: side.root }),
  }
  const hotPath = `/v1/products/${hot!.id}`
  for (const server of Object.values(servers)) {
    const res = await fetch(server.url + hotPath)
    await res.arrayBuffer()
    if (res.status !== 200) throw new Error(`${server.name}: the hot product answered ${res.status}`)
  }
  const customer = await harness.signup(servers.bun.url, `checkout-${side.label.toLowerCase()}`)
  return { servers, hotPath, products, customer, dataDir: dir }
}

interface LoadCase {
  case: 'hot-read' | 'checkout'
  name: string
  run: Record<'A' | 'B', (seconds: number) => Promise<Measurement>>
}

async function measureLoad(opts: AbOptions, sides: Side[], rows: AbRow[]): Promise<void> {
  if (!harness.has('wrk')) throw new Error('wrk is needed: apt-get install wrk')
  const pg = await startPostgres({ timeoutMs: 120_000 })
  harness.cleanups.push(() => pg.stop())
  // --traced: B exports its spans to a receiver that only counts them (parsing them would take the load's core).
  let otlp: OtlpReceiver | undefined
  if (opts.traced) {
    const receiver = await startOtlpReceiver({ keep: false })
    harness.cleanups.push(() => receiver.close())
    otlp = receiver
  }
  const started: Record<string, Awaited<ReturnType<typeof startSide>>> = {}
  for (const side of sides)
    started[side.label] = await startSide(side, pg, side.label === 'B' && otlp ? { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url } : {})
  const hot = (server: harness.Server, path: string) => (seconds: number) =>
    harness.alone(server, () => harness.wrk(server.url + path, { connections: harness.HOT_CONNECTIONS, seconds }))
  const checkout = (s: (typeof started)[string], server: harness.Server) =>
    harness.databaseApart(s.dataDir, async (seconds) => {
      // A token of its own each run: they expire.
      const script = harness.luaCheckout(await harness.login(server.url, s.customer.email), s.products)
      return harness.alone(server, () =>
        harness.wrk(`${server.url}/v1/orders`, { connections: harness.CHECKOUT_CONNECTIONS, seconds, script }),
      )
    })
  const a = started.A!
  const b = started.B!
  const cases: LoadCase[] = []
  for (const [runtime, key] of [
    ['Bun', 'bun'],
    ['Node', 'node'],
  ] as const) {
    if (opts.cases.includes('hot-read'))
      cases.push({
        case: 'hot-read',
        name: runtime,
        run: { A: hot(a.servers[key], a.hotPath), B: hot(b.servers[key], b.hotPath) },
      })
    if (opts.cases.includes('checkout'))
      cases.push({ case: 'checkout', name: runtime, run: { A: checkout(a, a.servers[key]), B: checkout(b, b.servers[key]) } })
  }
  const stopBusyLoop = harness.startBusyLoop()
  harness.say(`warming up ${cases.length} cases on both sides`)
  for (const c of cases) for (const side of ['A', 'B'] as const) await c.run[side](opts.warmSeconds)
  const runs = new Map(cases.map((c) => [c, { A: [] as Measurement[], B: [] as Measurement[] }]))
  for (let round = 1; round <= opts.rounds; round++) {
    // A B in odd rounds, B A in even ones (A B B A …): over an even number of rounds each side goes first as often.
    const order = round % 2 === 1 ? (['A', 'B'] as const) : (['B', 'A'] as const)
    harness.say(`round ${round} of ${opts.rounds} (${order.join(' ')})`)
    for (const c of round % 2 === 1 ? cases : [...cases].reverse())
      for (const side of order) {
        const m = await c.run[side](opts.seconds)
        runs.get(c)![side].push(m)
        harness.say(
          `  ${c.case.padEnd(8)} ${c.name.padEnd(5)} ${side} ${Math.round(m.rps).toString().padStart(7)} req/s  p99 ${m.p99.toFixed(2)} ms`,
        )
      }
  }
  stopBusyLoop()
  if (otlp) harness.say(`B exported traces in ${otlp.exports} requests, ${Math.round(otlp.bytes / 1024)} KiB`)
  const failures = (ms: Measurement[]) => ms.reduce((n, m) => n + m.non2xx + m.errors, 0)
  for (const c of cases) {
    const r = runs.get(c)!
    rows.push({
      case: c.case,
      name: c.name,
      unit: c.case === 'checkout' ? 'orders/s' : 'req/s',
      better: 'higher',
      a: r.A.map((m) => m.rps),
      b: r.B.map((m) => m.rps),
      failures: { a: failures(r.A), b: failures(r.B) },
      runs: { a: r.A, b: r.B },
    })
  }
}

export async function abMain(argv: string[]): Promise<void> {
  let opts: AbOptions
  try {
    opts = parseAbArgs(argv)
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${AB_USAGE}`)
    process.exit(2)
  }
  const started = Date.now()
  const commit = git('rev-parse', '--verify', '--quiet', `${opts.against}^{commit}`)
  if (!commit.ok) throw new Error(`${opts.against} is not a revision of this repository`)
  const head = git('rev-parse', '--short=12', 'HEAD').out
  const changed = git('status', '--porcelain', '--untracked-files=no').out !== ''
  const sides: Side[] = [
    { label: 'A', name: `${opts.against} (${commit.out.slice(0, 12)})`, root: materialise(commit.out) },
    { label: 'B', name: `working tree (${head}${changed ? ' + changes' : ''})${opts.traced ? ', traced' : ''}`, root: ROOT },
  ]
  harness.say(
    `A/B: ${opts.cases.join(', ')}; ${opts.rounds} rounds of ${opts.seconds} s${harness.PINNED ? ', servers on CPU 1, load on CPU 0' : ', unpinned'}`,
  )
  const load = opts.cases.includes('hot-read') || opts.cases.includes('checkout')
  const rows: AbRow[] = []
  for (const side of sides) {
    if (load) harness.buildNode(side.root)
    if (opts.cases.includes('bundle')) {
      const w = harness.buildWorker(side.root, join(harness.scratchDir(), `worker-${side.label}`))
      harness.say(`${side.label}: worker ${w.bytes} B minified, ${w.gzipBytes} B gzipped`)
      for (const [name, value] of [
        ['minified', w.bytes],
        ['minified + gzip -9', w.gzipBytes],
      ] as const) {
        let row = rows.find((r) => r.name === name)
        if (!row) rows.push((row = { case: 'bundle', name, unit: 'bytes', better: 'lower', a: [], b: [] }))
        row[side.label === 'A' ? 'a' : 'b'].push(value)
      }
    }
  }
  if (load) await measureLoad(opts, sides, rows)

  const compared = rows.map((r) => compare(r))
  const results = {
    date: new Date().toISOString(),
    quick: opts.quick,
    durationSeconds: Math.round((Date.now() - started) / 1000),
    command: `./run bench ${argv.join(' ')}`,
    machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), pinned: harness.PINNED },
    a: { rev: opts.against, commit: commit.out, name: sides[0]!.name },
    b: { commit: git('rev-parse', 'HEAD').out, changed, name: sides[1]!.name },
    plan: {
      rounds: opts.rounds,
      seconds: opts.seconds,
      warmSeconds: opts.warmSeconds,
      hotConnections: harness.HOT_CONNECTIONS,
      checkoutConnections: harness.CHECKOUT_CONNECTIONS,
    },
    guard: GUARD,
    outcome: guardOutcome(compared).outcome,
    cases: compared,
  }
  const file =
    opts.out ?? join(ROOT, 'bench/results', opts.quick ? 'ab-quick.json' : `ab-${results.date.slice(0, 16).replace(':', '-')}.json`)
  mkdirSync(join(file, '..'), { recursive: true })
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`)
  harness.say(`wrote ${file}`)
  process.stdout.write(renderAb(compared, { a: sides[0]!.name, b: sides[1]!.name }, opts))
}
