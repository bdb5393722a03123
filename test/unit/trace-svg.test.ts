import { describe, expect, it } from 'vitest'
import { renderTrace, type TraceSpan, waterfall } from '../../scripts/trace-svg.ts'

const span = (spanId: string, parentSpanId: string, name: string, startMs: number, endMs: number, extra: Partial<TraceSpan> = {}) => ({
  spanId,
  parentSpanId,
  name,
  kind: 3,
  attributes: {},
  statusCode: 0,
  startNs: BigInt(startMs * 1e6),
  endNs: BigInt(endMs * 1e6),
  ...extra,
})

describe('the trace picture', () => {
  // Received out of order, as an exporter's batches arrive; the request's parent is the client's own span, not in the trace.
  const spans: TraceSpan[] = [
    span('c', 'b', 'select orders', 12, 14, { attributes: { 'db.system.name': 'postgresql' } }),
    span('e', 'a', 'job payment.capture', 30, 60, { kind: 5, statusCode: 2, attributes: { 'job.attempt': 1 } }),
    span('a', 'client', 'POST /v1/orders/:id/pay', 0, 20, { kind: 2 }),
    span('b', 'a', 'transaction', 10, 18),
  ]

  it('orders spans as a waterfall: each parent, then its children by start, with depth', () => {
    expect(waterfall(spans).map((r) => [r.span.name, r.depth])).toEqual([
      ['POST /v1/orders/:id/pay', 0],
      ['transaction', 1],
      ['select orders', 2],
      ['job payment.capture', 1],
    ])
  })

  it('draws one row per span on one time axis, failures outlined, names escaped', () => {
    const svg = renderTrace([...spans, span('f', 'a', 'a <b> & c', 40, 41)], 'One <order>')
    // (A bar's width has a decimal; the legend's squares do not.)
    expect(svg.match(/<rect x="[\d.]+" y="[\d.]+" width="\d+\.\d" height="12"/g)).toHaveLength(5)
    expect(svg).toContain('job payment.capture · attempt 1 ✗')
    expect(svg).toContain('stroke="#c62828"')
    expect(svg).toContain('One &lt;order&gt;')
    expect(svg).toContain('a &lt;b&gt; &amp; c')
    // The request starts at 0 and spans a third of the 60 ms axis; the failed job ends at its end.
    const bar = (name: string) => {
      const at = svg.indexOf(`>${name}`)
      return svg
        .slice(at)
        .match(/<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/)!
        .slice(1)
        .map(Number)
    }
    const [x0, w0] = bar('POST /v1/orders/:id/pay')
    const [x1, w1] = bar('job payment.capture')
    expect(w0! / (x1! + w1! - x0!)).toBeCloseTo(1 / 3, 2)
    expect(svg).toContain('>20 ms<')
  })
})
