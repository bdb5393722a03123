/**
 * The list page with one read replica, against the primary alone:
 *
 *   ./run node bench/replicas.ts [--seconds 10] [--rounds 3] [--connections 32] [--writes 100]
 *
 * Starts a PostgreSQL primary and a hot standby made from it with
 * `pg_basebackup -R`, seeds 1,000 products, and runs edgeshop (Bun, then
 * Node) twice over the same primary with caching off, so that every
 * `GET /v1/products?limit=20` is a query: once with `DATABASE_URL` alone,
 * once with the standby in `DATABASE_REPLICA_URLS`. `wrk` drives each case for
 * `--seconds`, the cases interleaved over `--rounds`, while a writer updates
 * `--writes` products a second on the primary, so that the standby has WAL to
 * replay. Reported per runtime: the median requests per second and latency
 * of each case, their ratio, where the replica case's reads went (from
 * /metrics) and the replica's lag as the app measured it every 250 ms.
 *
 * Both PostgreSQL servers, the app and wrk share this machine's cores: the
 * ratio says what routing costs or saves here, not what a replica on its own
 * machine adds.
 */

import { spawn, spawnSync } from 'node:child_process'
import postgres from 'postgres'
import { ROOT, type Runtime, startAppServer } from '../test/support/app-server.ts'
import { startPostgres, stopAll } from '../test/support/postgres.ts'
import { applyMigrations } from '../test/support/services.ts'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : fallback
}
const seconds = arg('seconds', 10)
const rounds = arg('rounds', 3)
const connections = arg('connections', 32)
const writesPerSecond = arg('writes', 100)

const primary = await startPostgres({ synchronousCommit: true })
const url = await primary.createDatabase('bench_replicas')
await applyMigrations(url)
const seeded = spawnSync(process.env.BUN_BIN ?? 'bun', ['scripts/seed.ts', '--products', '1000'], {
  cwd: ROOT,
  env: { ...process.env, DATABASE_URL: url },
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'inherit'],
})
if (seeded.status !== 0) throw new Error(`seed failed: ${seeded.stdout}`)
const standby = await startPostgres({ standbyOf: primary })
const replicaUrl = standby.url('bench_replicas')
const sql = postgres(url, { max: 2, onnotice: () => {} })
const ids = (await sql`select id from products`).map((r) => r.id as string)

/** Updates products on the primary at a steady rate until stopped. */
function startWriter() {
  let stopped = false
  let n = 0
  const done = (async () => {
    const started = performance.now()
    while (!stopped) {
      await sql`update products set stock = stock + 1, version = version + 1, updated_at = now() where id = ${ids[n % ids.length]!}`
      n++
      const ahead = started + (n * 1000) / writesPerSecond - performance.now()
      if (ahead > 0) await new Promise((r) => setTimeout(r, ahead))
    }
  })()
  return async () => {
    stopped = true
    await done
    return n
  }
}

interface WrkResult {
  rps: number
  p50: number
  p99: number
}

/**
 * wrk's requests per second and latency percentiles (ms) for one URL. Spawned, not run synchronously: the writer
 * and the lag sampler of this process go on meanwhile.
 */
async function wrk(target: string): Promise<WrkResult> {
  const child = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', target], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (err += d))
  const code = await new Promise<number | null>((r) => child.once('exit', r))
  if (code !== 0) throw new Error(`wrk failed: ${err}`)
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
  const ms = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s)`).exec(out)
    return m ? Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1) : Number.NaN
  }
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  if (non2xx > 0) throw new Error(`${non2xx} answers were not 2xx:\n${out}`)
  return { rps, p50: ms('50'), p99: ms('99') }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

async function scrape(base: string) {
  const text = await (await fetch(`${base}/metrics`)).text()
  const reads: Record<string, number> = {}
  for (const m of text.matchAll(/^edgeshop_db_reads_total\{target="([^"]+)",reason="([^"]+)"\} (\d+)$/gm))
    reads[`${m[1]} (${m[2]})`] = Number(m[3])
  const lag = Number(/^edgeshop_replica_lag_seconds\{replica="replica1"\} ([\d.e-]+)$/m.exec(text)?.[1] ?? Number.NaN)
  return { reads, lag }
}

const base = { DATABASE_URL: url, JWT_SECRET: 'bench-replicas-secret-0123456789abcdef', LOG_LEVEL: 'warn', CACHE_L1_MAX_ENTRIES: '0' }
const lines: string[] = [
  `List page GET /v1/products?limit=20, caching off, ${connections} connections, ${seconds} s × ${rounds} rounds (median), ${writesPerSecond} product updates/s on the primary`,
  '',
  '| runtime | primary alone: req/s, p50 / p99 ms | one replica: req/s, p50 / p99 ms | ratio (req/s) | reads in the replica case | replica lag during load (ms): median / max |',
  '|---|---|---|---|---|---|',
]
let writes = 0
let writeSeconds = 0
for (const runtime of ['bun', 'node'] as Runtime[]) {
  const alone = await startAppServer(runtime, base)
  const routed = await startAppServer(runtime, { ...base, DATABASE_REPLICA_URLS: replicaUrl })
  const results: Record<'alone' | 'routed', WrkResult[]> = { alone: [], routed: [] }
  const lags: number[] = []
  const readsBefore = (await scrape(routed.url)).reads
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [name, server] of [
        ['alone', alone],
        ['routed', routed],
      ] as const) {
        const stopWriter = startWriter()
        const sampler =
          name === 'routed'
            ? setInterval(() => {
                scrape(server.url).then(
                  (s) => Number.isFinite(s.lag) && lags.push(s.lag * 1000),
                  () => {},
                )
              }, 250)
            : undefined
        results[name].push(await wrk(`${server.url}/v1/products?limit=20`))
        clearInterval(sampler)
        writes += await stopWriter()
        writeSeconds += seconds
      }
    }
    const after = (await scrape(routed.url)).reads
    const split = Object.entries(after)
      .map(([k, v]) => [k, v - (readsBefore[k] ?? 0)] as const)
      .filter(([, v]) => v > 0)
    const total = split.reduce((n, [, v]) => n + v, 0)
    const share = split.map(([k, v]) => `${k} ${((100 * v) / total).toFixed(1)} %`).join(', ')
    const row = (rs: WrkResult[]) =>
      `${median(rs.map((r) => r.rps)).toFixed(0)}, ${median(rs.map((r) => r.p50)).toFixed(2)} / ${median(rs.map((r) => r.p99)).toFixed(2)}`
    const ratio = median(results.routed.map((r) => r.rps)) / median(results.alone.map((r) => r.rps))
    const lagText = lags.length > 0 ? `${median(lags).toFixed(0)} / ${Math.max(...lags).toFixed(0)}` : 'not measured'
    lines.push(`| ${runtime} | ${row(results.alone)} | ${row(results.routed)} | ${ratio.toFixed(2)}× | ${share} | ${lagText} |`)
  } finally {
    await Promise.all([alone.stop(), routed.stop()])
  }
}

await stopAll([sql], [standby, primary])
lines.push('', `Updates done on the primary while wrk ran: ${(writes / writeSeconds).toFixed(0)} a second.`)
console.log(lines.join('\n'))
