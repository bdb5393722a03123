/** The shape of bench/results/<date>.json, written by bench/run.ts and read by bench/report.ts. */

/** One load run: requests (or, for pgbench, transactions) per second, latency percentiles in ms, failures. */
export interface Measurement {
  rps: number
  p50: number
  p99: number
  /** The 99.9th percentile, where the case asks wrk for it (the steady-rate cases). */
  p999?: number
  /** Answers that were neither 2xx nor 3xx (pgbench: failed transactions). */
  non2xx: number
  /** Socket errors: connect, read, write, timeout. */
  errors: number
  /** Requests answered over the run (wrk's total). */
  requests?: number
  /** CPU time (user + system) per request of the measured server's process, in ms (the Workers cases). */
  cpuMs?: number
  /** CPU time per request of every PostgreSQL process, in ms (the Workers cases). */
  dbCpuMs?: number
  /** PostgreSQL sessions (connections) started per request (the Workers cases). */
  dbSessions?: number
  /** Share of the run's reads a replica answered, 0 to 1 (the read-replica cases; NaN when none were counted). */
  replicaReads?: number
  /** The replica's lag as the app measured it, sampled every 250 ms over the run: median, in ms (the replica cases). */
  lagMedianMs?: number
  /** …and the largest sample, in ms; over several runs, the largest of all. */
  lagMaxMs?: number
  /** Product updates done a second on the primary over the run (the read-replica cases). */
  writesPerSecond?: number
}

export interface CaseResult {
  scenario: string
  name: string
  runs: Measurement[]
  /** Medians of the runs (failures summed). */
  median: Measurement
}

export interface BenchResults {
  date: string
  quick: boolean
  durationSeconds: number
  command: string
  /** `loadAverage`: the machine's 1, 5 and 15 minute load averages at the end of the run (other jobs share it). */
  machine: { cpu: string; cores: number; pinned: boolean; loadAverage?: number[] }
  versions: Record<string, string>
  plan: Record<string, number>
  answerBytes: number
  cases: CaseResult[]
  /** Peak RSS (VmHWM) of each server over the whole run. */
  memoryMb: Record<string, number | null>
  /** RSS of the main edgeshop servers right after each scenario (`edgeshop Bun, after hot`). */
  rssAfterMb: Record<string, number>
  /** The Worker bundle's figures; absent when the Workers scenario did not run (`--only replicas`). */
  worker?: { bytes: number; gzipBytes: number; coldStartMs: number; emptyWorkerColdStartMs: number }
  /** The idle-stream scenario's figures, one per runtime (bench/streams.ts); absent when it did not run. */
  streams?: StreamsResult[]
  /** The one scenario measured (`./run bench --only workerd`, `--only replicas`, `--only streams`); absent in a full run. */
  only?: string
}

/** Event latencies over a number of status changes, in ms. */
export interface LatencySummary {
  events: number
  p50: number
  p99: number
  max: number
}

/** One runtime's figures in the idle-stream scenario (`streams`, bench/streams.ts). */
export interface StreamsResult {
  runtime: string
  /** Idle streams held open at once. */
  streams: number
  /** The server's RSS (VmRSS) after warm-up with no stream open, and with the idle streams open, in KiB. */
  rssBeforeKib: number
  rssAfterKib: number
  /** (rssAfterKib − rssBeforeKib) / streams. */
  kibPerStream: number
  /** From the first connect to `edgeshop_sse_streams` showing them all, in ms. */
  openMs: number
  /** From sending a status change to its event arriving on the order's stream: no other stream open, and with the idle streams open. */
  idle: LatencySummary
  loaded: LatencySummary
  /** From sending the same payments (`POST /v1/orders/{id}/pay`) to their answers, for comparison. */
  idleAnswer: LatencySummary
  loadedAnswer: LatencySummary
  /** From hanging up every idle stream to `edgeshop_sse_streams` showing 0, in ms. */
  closeMs: number
  /** Streams answered with other than 200, and idle streams the server ended while they were held (both 0 in a good run). */
  refused: number
  dropped: number
}

/** The cases of the Workers scenario (`workerd`, bench/workerd.ts): the bare worker, then edgeshop's routes. */
export const WORKERD_CASES = {
  bare: 'bare worker, same answer',
  hot: 'hot read',
  l1Off: 'hot read, L1 off (Redis hit)',
  list: 'list page',
  checkout: 'checkout',
  login: 'login (PBKDF2)',
} as const

/** The cases of the read-replica scenario (`replicas`, bench/replicas.ts), each after its runtime: `Bun, one replica`. */
export const REPLICAS_CASES = {
  alone: 'primary alone',
  replica: 'one replica',
} as const

/** The median of the finite values (NaN when there are none). */
export function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b)
  if (s.length === 0) return Number.NaN
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
