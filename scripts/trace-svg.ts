import type { ReceivedSpan } from '../test/support/otlp-receiver.ts'

/**
 * Draws one trace as a waterfall (SVG): a row per span, indented under its
 * parent, its bar placed by start and end on one time axis; coloured by
 * what it is (request, job, statement, Redis, outbound call, cache), failed
 * spans outlined in red. `./run trace:picture` draws docs/img/order-trace.svg
 * with it.
 */

/** What the picture reads of a span as the OTLP receiver keeps it. */
export type TraceSpan = Pick<ReceivedSpan, 'spanId' | 'parentSpanId' | 'name' | 'kind' | 'attributes' | 'statusCode' | 'startNs' | 'endNs'>

const KINDS = [
  { label: 'request', fill: '#2f6fdf', is: (s: TraceSpan) => s.kind === 2 },
  { label: 'job run', fill: '#7b4fd6', is: (s: TraceSpan) => s.kind === 5 },
  { label: 'PostgreSQL', fill: '#3a9a5b', is: (s: TraceSpan) => s.attributes['db.system.name'] === 'postgresql' },
  { label: 'Redis (Upstash)', fill: '#c8553d', is: (s: TraceSpan) => s.attributes['db.system.name'] === 'redis' },
  { label: 'outbound call', fill: '#e0913a', is: (s: TraceSpan) => s.kind === 3 },
  { label: 'cache', fill: '#8a94a3', is: () => true },
]

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** The spans in waterfall order (each parent, then its children by start), with their depth. */
export function waterfall(spans: TraceSpan[]): { span: TraceSpan; depth: number }[] {
  const ids = new Set(spans.map((s) => s.spanId))
  const byStart = [...spans].sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0))
  const children = new Map<string, TraceSpan[]>()
  for (const s of byStart) {
    const parent = ids.has(s.parentSpanId) ? s.parentSpanId : ''
    children.set(parent, [...(children.get(parent) ?? []), s])
  }
  const out: { span: TraceSpan; depth: number }[] = []
  const visit = (parent: string, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      out.push({ span: s, depth })
      visit(s.spanId, depth + 1)
    }
  }
  visit('', 0)
  return out
}

/** A step of 1, 2 or 5 × 10ⁿ ms giving about six ticks over `totalMs`. */
function tickStep(totalMs: number): number {
  const raw = totalMs / 6
  const p = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? raw
}

/**
 * @example
 * ```ts
 * writeFileSync('docs/img/order-trace.svg', renderTrace(spansOfOneTrace, 'One order, checkout to email'))
 * ```
 */
export function renderTrace(spans: TraceSpan[], title: string): string {
  const rows = waterfall(spans)
  // (Nanoseconds since the epoch are bigints: Math.min and Math.max take none.)
  let t0 = rows[0]?.span.startNs ?? 0n
  let t1 = t0
  for (const { span } of rows) {
    if (span.startNs < t0) t0 = span.startNs
    if (span.endNs > t1) t1 = span.endNs
  }
  const totalMs = Math.max(Number(t1 - t0) / 1e6, 1)
  const ms = (ns: bigint) => Number(ns - t0) / 1e6
  const rowH = 18
  const labelW = 360
  const barW = 600
  const top = 74
  const width = labelW + barW + 90
  const height = top + rows.length * rowH + 12
  const x = (atMs: number) => labelW + (atMs / totalMs) * barW
  const step = tickStep(totalMs)
  const ticks: string[] = []
  for (let t = 0; t <= totalMs; t += step)
    ticks.push(
      `<line x1="${x(t).toFixed(1)}" y1="${top - 6}" x2="${x(t).toFixed(1)}" y2="${height - 8}" stroke="#e4e7eb"/><text x="${x(t).toFixed(1)}" y="${top - 10}" text-anchor="middle" fill="#616e7c">${t} ms</text>`,
    )
  const legend = KINDS.map(
    (k, i) => `<rect x="${8 + i * 130}" y="30" width="12" height="12" fill="${k.fill}"/><text x="${24 + i * 130}" y="40">${k.label}</text>`,
  )
  const bars = rows.map(({ span, depth }, i) => {
    const y = top + i * rowH
    const start = ms(span.startNs)
    const dur = Math.max(ms(span.endNs) - start, 0)
    const fill = KINDS.find((k) => k.is(span))!.fill
    const attempt = span.attributes['job.attempt']
    const label = `${span.name}${attempt === undefined ? '' : ` · attempt ${attempt}`}`
    const failed = span.statusCode === 2
    const w = Math.max((dur / totalMs) * barW, 1.5)
    return (
      `<text x="${8 + depth * 14}" y="${y + 13}"${failed ? ' fill="#c62828"' : ''}>${esc(label)}${failed ? ' ✗' : ''}</text>` +
      `<rect x="${x(start).toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${fill}"${failed ? ' stroke="#c62828" stroke-width="2"' : ''}/>` +
      `<text x="${(x(start) + w + 4).toFixed(1)}" y="${y + 13}" fill="#616e7c">${dur < 10 ? dur.toFixed(1) : Math.round(dur)} ms</text>`
    )
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" font-size="11">
<rect width="100%" height="100%" fill="#fff"/>
<text x="8" y="18" font-size="14" font-weight="bold">${esc(title)}</text>
${legend.join('\n')}
${ticks.join('\n')}
${bars.join('\n')}
</svg>
`
}
