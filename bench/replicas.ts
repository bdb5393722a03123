/**
 * Scenario 9 of `./run bench`, read replicas: the list page with one
 * streaming read replica, against the primary alone.
 *
 * Starts a PostgreSQL primary of its own (synchronous commits on, so that
 * WAL reaches the standby as each write commits) and a hot standby made from
 * it with `pg_basebackup -R`, seeds 1,000 products, and runs edgeshop on Bun
 * and on Node twice over the same primary with caching off
 * (`CACHE_L1_MAX_ENTRIES=0`, no Redis), so that every
 * `GET /v1/products?limit=20` is a query: once with `DATABASE_URL` alone,
 * once with the standby in `DATABASE_REPLICA_URLS`. Each case is a `wrk`
 * run with that server the only one running, while this process updates
 * `WRITES_PER_SECOND` products a second on the primary, so that the standby
 * has WAL to replay. Besides the rate and latency, each run records where
 * its reads went (`edgeshop_db_reads_total` on /metrics, before and after)
 * and, in the replica cases, the replica's lag as the app measured it,
 * sampled every 250 ms (`edgeshop_replica_lag_seconds`).
 *
 * Both PostgreSQL servers, the app and wrk share the machine's cores: the
 * ratio says what routing costs or saves there, not what a replica on a
 * machine of its own adds.
 */
import postgres from 'postgres'
import { startPostgres } from '../test/support/postgres.ts'
import { createMigratedDatabase } from '../test/support/services.ts'
import { alone, type Case, cleanups, edgeshopCommand, type Server, seed, serve, serverEnv, wrk } from './harness.ts'
import { type Measurement, median, REPLICAS_CASES } from './results.ts'

/** Connections `wrk` holds to the server in each case. */
export const REPLICA_CONNECTIONS = 32
/** Product updates a second on the primary while each case runs. */
export const WRITES_PER_SECOND = 100
const LIST = '/v1/products?limit=20'
const LAG_SAMPLE_MS = 250

/** Reads counted on /metrics by target (`primary`, `replica1`, …), summed over their reasons. */
export function readsOf(metrics: string): Record<string, number> {
  const reads: Record<string, number> = {}
  for (const m of metrics.matchAll(/^edgeshop_db_reads_total\{target="([^"]+)",reason="[^"]+"\} (\d+)$/gm))
    reads[m[1]!] = (reads[m[1]!] ?? 0) + Number(m[2])
  return reads
}

/** The first replica's lag on /metrics, in ms (NaN before its first poll). */
export function lagMsOf(metrics: string): number {
  return Number(/^edgeshop_replica_lag_seconds\{replica="replica1"\} ([\d.e+-]+)$/m.exec(metrics)?.[1] ?? Number.NaN) * 1000
}

/** The share of the reads between two counts that a replica answered (NaN when none were counted). */
export function replicaShare(before: Record<string, number>, after: Record<string, number>): number {
  let replica = 0
  let total = 0
  for (const [target, n] of Object.entries(after)) {
    const d = n - (before[target] ?? 0)
    total += d
    if (target !== 'primary') replica += d
  }
  return total > 0 ? replica / total : Number.NaN
}

const metricsOf = async (server: Server) => (await fetch(`${server.url}/metrics`)).text()

/** Updates products on the primary at `WRITES_PER_SECOND` until stopped; the stop gives the updates done. */
function startWriter(sql: postgres.Sql, ids: string[]): () => Promise<number> {
  let stopped = false
  let n = 0
  const done = (async () => {
    const started = performance.now()
    while (!stopped) {
      await sql`update products set stock = stock + 1, version = version + 1, updated_at = now() where id = ${ids[n % ids.length]!}`
      n++
      const ahead = started + (n * 1000) / WRITES_PER_SECOND - performance.now()
      if (ahead > 0) await new Promise((r) => setTimeout(r, ahead))
    }
  })()
  return async () => {
    stopped = true
    await done
    return n
  }
}

/** Starts the primary, its standby and the four servers; the cases that measure them and the list page's size. */
export async function replicasScenario(): Promise<{ cases: Case[]; answerBytes: number }> {
  const primary = await startPostgres({ synchronousCommit: true, timeoutMs: 120_000 })
  cleanups.push(() => primary.stop())
  const url = await createMigratedDatabase(primary, 'bench_replicas')
  seed(url, 1_000)
  // Cleanups run last first: the standby stops before its primary.
  const standby = await startPostgres({ standbyOf: primary, timeoutMs: 120_000 })
  cleanups.push(() => standby.stop())
  const sql = postgres(url, { max: 2, onnotice: () => {} })
  cleanups.push(() => sql.end({ timeout: 5 }))
  const ids = (await sql<{ id: string }[]>`select id from products`).map((r) => r.id)

  const env = { ...serverEnv, DATABASE_URL: url, CACHE_L1_MAX_ENTRIES: '0' }
  /** A wrk run of the list page with the writer on, and (`replica`) the lag sampled meanwhile. */
  const load = (server: Server, replica: boolean) => (seconds: number) =>
    alone(server, async (): Promise<Measurement> => {
      const before = readsOf(await metricsOf(server))
      const lags: number[] = []
      const sampler = replica
        ? setInterval(() => {
            metricsOf(server).then(
              (text) => {
                const lag = lagMsOf(text)
                if (Number.isFinite(lag)) lags.push(lag)
              },
              () => {},
            )
          }, LAG_SAMPLE_MS)
        : undefined
      const stopWriter = startWriter(sql, ids)
      let m: Measurement
      try {
        m = await wrk(server.url + LIST, { connections: REPLICA_CONNECTIONS, seconds })
      } finally {
        clearInterval(sampler)
      }
      const writes = await stopWriter()
      return {
        ...m,
        replicaReads: replicaShare(before, readsOf(await metricsOf(server))),
        ...(replica ? { lagMedianMs: median(lags), lagMaxMs: lags.length > 0 ? Math.max(...lags) : Number.NaN } : {}),
        writesPerSecond: writes / seconds,
      }
    })

  const cases: Case[] = []
  let answerBytes = 0
  for (const [runtime, label] of [
    ['bun', 'Bun'],
    ['node', 'Node'],
  ] as const) {
    const primaryAlone = await serve(`edgeshop-${runtime}-primary`, edgeshopCommand(runtime), env)
    const routed = await serve(`edgeshop-${runtime}-replica`, edgeshopCommand(runtime), {
      ...env,
      DATABASE_REPLICA_URLS: standby.url('bench_replicas'),
    })
    for (const server of [primaryAlone, routed]) {
      const res = await fetch(server.url + LIST)
      answerBytes = (await res.arrayBuffer()).byteLength
      if (res.status !== 200) throw new Error(`${server.name} answered the list page with ${res.status}`)
    }
    cases.push(
      { scenario: 'replicas', name: `${label}, ${REPLICAS_CASES.alone}`, run: load(primaryAlone, false) },
      { scenario: 'replicas', name: `${label}, ${REPLICAS_CASES.replica}`, run: load(routed, true) },
    )
  }
  return { cases, answerBytes }
}
