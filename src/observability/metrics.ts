/**
 * A small Prometheus registry: counters, histograms and gauges with labels,
 * rendered in the text exposition format (version 0.0.4). Recording is a map
 * lookup and an increment, cheap enough for the hot path.
 *
 * @example
 * ```ts
 * const metrics = createMetrics()
 * const lookups = metrics.counter('edgeshop_cache_lookups_total', 'Cache lookups', ['tier', 'result'])
 * lookups.inc({ tier: 'l1', result: 'hit' })
 * metrics.render()
 * ```
 */
export interface Metrics {
  counter<L extends string>(name: string, help: string, labels: readonly L[]): Counter<L>
  histogram<L extends string>(name: string, help: string, labels: readonly L[], buckets: readonly number[]): Histogram<L>
  /** A value read when rendered; `type: 'counter'` for a cumulative count kept elsewhere. */
  gauge(name: string, help: string, collect: () => GaugeSample[] | number, type?: 'gauge' | 'counter'): void
  /** Work each scrape waits for (a value read from the database), at most `boundMs`; past it the last value is rendered. */
  beforeScrape(refresh: () => Promise<unknown>, boundMs: number): void
  render(): string
  /** Runs the `beforeScrape` work, then renders. */
  scrape(): Promise<string>
}

export type Labels<L extends string> = Record<L, string | number>
export interface Counter<L extends string> {
  inc(labels: Labels<L>, by?: number): void
  /** The series of one label set, found once: for a caller that records the same labels again and again. */
  with(labels: Labels<L>): { inc(by?: number): void }
}
export interface Histogram<L extends string> {
  observe(labels: Labels<L>, value: number): void
  /** The series of one label set, found once ({@link Counter.with}). */
  with(labels: Labels<L>): { observe(value: number): void }
}
export interface GaugeSample {
  labels?: Record<string, string | number>
  value: number
}

interface Series {
  labels: string
  value: number
}
interface HistogramSeries {
  labels: string
  counts: Float64Array
  sum: number
  count: number
}

const escapeLabel = (v: string | number) => String(v).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
const renderLabels = (names: readonly string[], labels: Record<string, string | number>) =>
  names.map((n) => `${n}="${escapeLabel(labels[n] ?? '')}"`).join(',')
const fmt = (n: number) => (Number.isFinite(n) ? String(n) : n > 0 ? '+Inf' : n < 0 ? '-Inf' : 'NaN')

/** Latency buckets in seconds, from 0.5 ms to 10 s. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

/**
 * Finds (or makes) the series of a label set by walking one map per label,
 * keyed by the label's value. No key string is built per call: the values are
 * mostly the same string objects each time (route patterns, methods) or
 * numbers (statuses), whose hashes the engine keeps, so a lookup is a few
 * cheap probes. A value's type is part of its identity: pass a label as a
 * number or as a string, always the same way.
 */
function seriesFinder<S>(names: readonly string[], make: (labels: Record<string, string | number>) => S, all: S[]) {
  const root = new Map<unknown, unknown>()
  const depth = names.length
  return (labels: Record<string, string | number>): S => {
    let level = root
    for (let i = 0; i < depth - 1; i++) {
      const value = labels[names[i]!]
      let next = level.get(value) as Map<unknown, unknown> | undefined
      if (next === undefined) level.set(value, (next = new Map()))
      level = next
    }
    const last = depth === 0 ? '' : labels[names[depth - 1]!]
    let series = level.get(last) as S | undefined
    if (series === undefined) {
      series = make(labels)
      level.set(last, series)
      all.push(series)
    }
    return series
  }
}

export function createMetrics(): Metrics {
  const renderers: (() => string)[] = []
  const refreshers: { refresh: () => Promise<unknown>; boundMs: number }[] = []
  const render = () => renderers.map((r) => r()).join('')

  return {
    counter<L extends string>(name: string, help: string, names: readonly L[]): Counter<L> {
      const series: Series[] = []
      const find = seriesFinder(names, (labels) => ({ labels: renderLabels(names, labels), value: 0 }), series)
      renderers.push(() => {
        let out = `# HELP ${name} ${help}\n# TYPE ${name} counter\n`
        for (const s of series) out += `${name}${s.labels ? `{${s.labels}}` : ''} ${fmt(s.value)}\n`
        return out
      })
      return {
        inc(labels, by = 1) {
          find(labels).value += by
        },
        with(labels) {
          const s = find(labels)
          return {
            inc(by = 1) {
              s.value += by
            },
          }
        },
      }
    },

    histogram<L extends string>(name: string, help: string, names: readonly L[], buckets: readonly number[]): Histogram<L> {
      const series: HistogramSeries[] = []
      const find = seriesFinder(
        names,
        (labels) => ({ labels: renderLabels(names, labels), counts: new Float64Array(buckets.length), sum: 0, count: 0 }),
        series,
      )
      renderers.push(() => {
        let out = `# HELP ${name} ${help}\n# TYPE ${name} histogram\n`
        for (const s of series) {
          const prefix = s.labels ? `${s.labels},` : ''
          let cumulative = 0
          for (let i = 0; i < buckets.length; i++) {
            cumulative += s.counts[i]!
            out += `${name}_bucket{${prefix}le="${buckets[i]}"} ${cumulative}\n`
          }
          out += `${name}_bucket{${prefix}le="+Inf"} ${s.count}\n`
          out += `${name}_sum${s.labels ? `{${s.labels}}` : ''} ${s.sum}\n`
          out += `${name}_count${s.labels ? `{${s.labels}}` : ''} ${s.count}\n`
        }
        return out
      })
      const record = (s: HistogramSeries, value: number) => {
        let i = 0
        while (i < buckets.length && value > buckets[i]!) i++
        if (i < buckets.length) s.counts[i]!++
        s.sum += value
        s.count++
      }
      return {
        observe(labels, value) {
          record(find(labels), value)
        },
        with(labels) {
          const s = find(labels)
          return { observe: (value) => record(s, value) }
        },
      }
    },

    gauge(name, help, collect, type = 'gauge') {
      renderers.push(() => {
        let out = `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`
        const samples = collect()
        if (typeof samples === 'number') return `${out}${name} ${fmt(samples)}\n`
        for (const s of samples) {
          const labels = s.labels ? renderLabels(Object.keys(s.labels), s.labels) : ''
          out += `${name}${labels ? `{${labels}}` : ''} ${fmt(s.value)}\n`
        }
        return out
      })
    },

    beforeScrape(refresh, boundMs) {
      refreshers.push({ refresh, boundMs })
    },

    render,

    async scrape() {
      await Promise.all(
        refreshers.map(({ refresh, boundMs }) => {
          let timer: ReturnType<typeof setTimeout> | undefined
          const bound = new Promise<void>((r) => (timer = setTimeout(r, boundMs)))
          return Promise.race([refresh().catch(() => {}), bound]).finally(() => clearTimeout(timer))
        }),
      )
      return render()
    },
  }
}
