/**
 * The arithmetic and the text of `./run bench --against <rev>` (bench/ab.ts):
 * its arguments, each case's medians, ratio, spread and verdict against the
 * 5 % guard, and the tables it prints. Nothing here starts or reads anything.
 */
import { type Measurement, median } from './results.ts'

export const AB_CASES = ['hot-read', 'checkout', 'bundle'] as const
export type AbCase = (typeof AB_CASES)[number]

/** How far B may fall behind A before a case misses the guard: 5 % (issue 20). */
export const GUARD = 0.05

export const AB_USAGE = `usage: ./run bench --against <git-rev> [--cases ${AB_CASES.join(',')}] [--rounds N] [--seconds S] [--quick] [--traced] [--out FILE]
  A is <git-rev>, B the working tree; each case runs for A and B in turn (A B, then B A, ...) for N rounds of S seconds.
  --traced: B's servers export traces (OTEL_EXPORTER_OTLP_ENDPOINT) to an OTLP/HTTP receiver the bench runs; with --against HEAD, tracing's cost.
  defaults: every case, 6 rounds of 5 s (--quick: 2 rounds of 1 s); results in bench/results/ab-<date>.json (--quick: ab-quick.json)
`

export interface AbOptions {
  against: string
  cases: AbCase[]
  rounds: number
  seconds: number
  warmSeconds: number
  quick: boolean
  /** B's servers export traces to a local OTLP/HTTP receiver (`--traced`). */
  traced: boolean
  /** Where the results go instead of bench/results/. */
  out?: string
}

/** Parses the arguments of `./run bench --against …`; throws an Error that says what is wrong. */
export function parseAbArgs(argv: string[]): AbOptions {
  const quick = argv.includes('--quick')
  const opts: AbOptions = {
    against: '',
    cases: [...AB_CASES],
    rounds: quick ? 2 : 6,
    seconds: quick ? 1 : 5,
    warmSeconds: quick ? 1 : 2,
    quick,
    traced: argv.includes('--traced'),
  }
  const value = (i: number, flag: string) => {
    const v = argv[i + 1]
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`)
    return v
  }
  const whole = (text: string, flag: string) => {
    const n = Number(text)
    if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} takes a whole number of at least 1, not ${text}`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    switch (arg) {
      case '--quick':
      case '--traced':
        break
      case '--against':
        opts.against = value(i++, arg)
        break
      case '--cases': {
        const names = value(i++, arg).split(',').filter(Boolean)
        const unknown = names.filter((n) => !(AB_CASES as readonly string[]).includes(n))
        if (unknown.length > 0 || names.length === 0)
          throw new Error(`--cases takes a comma-separated list of ${AB_CASES.join(', ')}; not ${unknown.join(', ') || 'nothing'}`)
        opts.cases = AB_CASES.filter((c) => names.includes(c))
        break
      }
      case '--rounds':
        opts.rounds = whole(value(i++, arg), arg)
        break
      case '--seconds':
        opts.seconds = whole(value(i++, arg), arg)
        break
      case '--out':
        opts.out = value(i++, arg)
        break
      default:
        throw new Error(`unknown argument ${arg}`)
    }
  }
  if (!opts.against) throw new Error('--against needs a git revision')
  return opts
}

/** One compared figure: what A and B measured, round by round (a build's size: once). */
export interface AbRow {
  case: AbCase
  name: string
  unit: string
  better: 'higher' | 'lower'
  a: number[]
  b: number[]
  /** Answers that were not 2xx/3xx and socket errors, summed over the rounds: a side with any has no valid figure. */
  failures?: { a: number; b: number }
  /** The load runs behind `a` and `b`, with their latencies. */
  runs?: { a: Measurement[]; b: Measurement[] }
}

/**
 * within / better: B is no more than the guard behind A, or ahead by more.
 * worse: B is behind by more than the guard and by more than the rounds'
 * own spread. unsettled: behind by more than the guard, but by less than the
 * spread, so the run cannot tell (a loaded machine, too few rounds).
 * invalid: a side had failed requests, or no figure.
 */
export type Verdict = 'within' | 'better' | 'worse' | 'unsettled' | 'invalid'

export interface AbComparison extends AbRow {
  medianA: number
  medianB: number
  /** medianB / medianA. */
  ratio: number
  /** (max − min) / median of each side's rounds. */
  spreadA: number
  spreadB: number
  /** B/A of each round, the two measured one after the other (empty for a figure measured once). */
  roundRatios: number[]
  /** How much worse B is than A as a fraction (negative: better). */
  change: number
  verdict: Verdict
  /** A side's rounds spread wider than the guard: the verdict is weaker than it reads. */
  noisy: boolean
}

export function spread(xs: number[]): number {
  const m = median(xs)
  if (!Number.isFinite(m) || m === 0) return Number.NaN
  return (Math.max(...xs) - Math.min(...xs)) / m
}

export function compare(row: AbRow, guard = GUARD): AbComparison {
  const medianA = median(row.a)
  const medianB = median(row.b)
  const ratio = medianB / medianA
  const change = row.better === 'higher' ? 1 - ratio : ratio - 1
  const spreadA = spread(row.a)
  const spreadB = spread(row.b)
  const roundRatios = row.a.length > 1 && row.a.length === row.b.length ? row.b.map((b, i) => b / row.a[i]!) : []
  const failed = (row.failures?.a ?? 0) + (row.failures?.b ?? 0) > 0
  const noise = Math.max(spreadA || 0, spreadB || 0)
  const verdict: Verdict =
    failed || !Number.isFinite(change)
      ? 'invalid'
      : change > guard + 1e-9
        ? change > noise
          ? 'worse'
          : 'unsettled'
        : change < -guard - 1e-9
          ? 'better'
          : 'within'
  const noisy = noise > guard
  return { ...row, medianA, medianB, ratio, spreadA, spreadB, roundRatios, change, verdict, noisy }
}

const pct = (x: number, digits = 1) => (Number.isFinite(x) ? `${(x * 100).toFixed(digits)} %` : '–')
const num = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–')

export function verdictText(c: AbComparison, guard = GUARD): string {
  const text =
    c.verdict === 'invalid'
      ? `no verdict: ${c.failures ? `${c.failures.a} failed on A, ${c.failures.b} on B` : 'no figure'}`
      : c.verdict === 'within'
        ? `within ${pct(guard, 0)}`
        : c.verdict === 'worse'
          ? `**worse** by ${pct(c.change)}`
          : c.verdict === 'unsettled'
            ? `not settled: ${pct(c.change)} behind, less than the spread`
            : `better by ${pct(-c.change)}`
  return c.noisy && (c.verdict === 'within' || c.verdict === 'better') ? `${text} (noisy: spread > ${pct(guard, 0)})` : text
}

const TITLES: Record<AbCase, string> = {
  'hot-read': 'Hot read: GET /v1/products/{id} from L1',
  checkout: 'Checkout: POST /v1/orders',
  bundle: 'Worker bundle: wrangler deploy --dry-run --minify',
}

/** The tables printed at the end of a run: one per case, A and B side by side. */
export function renderAb(
  rows: AbComparison[],
  labels: { a: string; b: string },
  plan: { rounds: number; seconds: number },
  guard = GUARD,
): string {
  const out: string[] = []
  for (const kase of AB_CASES) {
    const mine = rows.filter((r) => r.case === kase)
    if (mine.length === 0) continue
    const first = mine[0]!
    const how = kase === 'bundle' ? 'built once per side' : `${plan.rounds} rounds of ${plan.seconds} s per side, interleaved`
    out.push(`### ${TITLES[kase]} (${first.unit}, ${first.better} is better; ${how})`, '')
    out.push(
      `| | A: ${labels.a} | B: ${labels.b} | B/A | spread A | spread B | B/A by round | verdict |`,
      '|---|---:|---:|---:|---:|---:|---:|---|',
    )
    for (const r of mine) {
      const x = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : '–')
      const byRound = r.roundRatios.length > 0 ? `${x(Math.min(...r.roundRatios))}–${x(Math.max(...r.roundRatios))}` : '–'
      out.push(
        `| ${r.name} | ${num(r.medianA)} | ${num(r.medianB)} | ${x(r.ratio)}× | ${pct(r.spreadA)} | ${pct(r.spreadB)} | ${byRound} | ${verdictText(r, guard)} |`,
      )
    }
    out.push('')
  }
  const g = guardOutcome(rows)
  const names = (rs: AbComparison[]) => rs.map((r) => `${TITLES[r.case].split(':')[0]}, ${r.name}`).join('; ')
  const head = `Guard (B within ${pct(guard, 0)} of A):`
  out.push(
    g.outcome === 'met'
      ? `${head} met on all ${rows.length} figures.`
      : g.outcome === 'missed'
        ? `${head} **missed** on ${names(g.missed)}.${g.unsettled.length > 0 ? ` Not settled on ${names(g.unsettled)}.` : ''}`
        : `${head} not settled on ${names(g.unsettled)}: B measured behind by more than ${pct(guard, 0)} but by less than the rounds' spread; run again with more rounds (--rounds) or on a quieter machine.`,
  )
  return `${out.join('\n')}\n`
}

/** The run's answer to the guard: missed where a figure is worse or invalid, else not settled where one is unsettled, else met. */
export function guardOutcome(rows: AbComparison[]): {
  outcome: 'met' | 'missed' | 'unsettled'
  missed: AbComparison[]
  unsettled: AbComparison[]
} {
  const missed = rows.filter((r) => r.verdict === 'worse' || r.verdict === 'invalid')
  const unsettled = rows.filter((r) => r.verdict === 'unsettled')
  return { outcome: missed.length > 0 ? 'missed' : unsettled.length > 0 ? 'unsettled' : 'met', missed, unsettled }
}
