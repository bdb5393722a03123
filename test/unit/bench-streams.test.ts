import { describe, expect, it } from 'vitest'
import { render, renderStreams, targets } from '../../bench/report.ts'
import type { BenchResults, StreamsResult } from '../../bench/results.ts'
import { kibPerStream, openFilesLimitOf, percentile, type SseMessage, sseReader, streamsGaugeOf, summarize } from '../../bench/streams.ts'
import { onlyResults } from '../support/bench-results.ts'

/*
 * The idle-stream scenario of `./run bench` (bench/streams.ts): how its raw
 * clients read an answer, the figures it derives, and the section of
 * docs/BENCHMARKS.md its results become. No figure is asserted.
 */

const HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n'
const chunk = (text: string) => `${Buffer.byteLength(text, 'latin1').toString(16)}\r\n${text}\r\n`
const EVENT = 'id: 42\nevent: status\ndata: {"orderId":"o1","status":"payment_processing"}\n\n'

describe('what a raw client reads', () => {
  it('takes the status from the head and the messages from the chunked body', () => {
    const reader = sseReader()
    expect(reader.status).toBeUndefined()
    const got = reader.feed(`${HEAD}${chunk('retry: 1000\n\n')}${chunk(EVENT)}${chunk(': heartbeat\n\n')}`)
    expect(reader.status).toBe(200)
    expect(got).toEqual<SseMessage[]>([
      { retry: 1000 },
      { id: '42', event: 'status', data: '{"orderId":"o1","status":"payment_processing"}' },
      { comment: 'heartbeat' },
    ])
  })

  it('gives the same messages whatever the pieces the answer arrives in, down to one byte each', () => {
    const answer = `${HEAD}${chunk('retry: 1000\n\n')}${chunk(EVENT.slice(0, 20))}${chunk(EVENT.slice(20))}${chunk(': heartbeat\n\n')}0\r\n\r\n`
    const whole = sseReader().feed(answer)
    for (const size of [1, 2, 3, 7, 64]) {
      const reader = sseReader()
      const got: SseMessage[] = []
      for (let at = 0; at < answer.length; at += size) got.push(...reader.feed(answer.slice(at, at + size)))
      expect(got).toEqual(whole)
    }
    expect(whole).toHaveLength(3)
  })

  it('reads a body that is not chunked, and the status of a refusal', () => {
    const plain = sseReader()
    expect(plain.feed(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n${EVENT}`)).toHaveLength(1)
    const refused = sseReader()
    refused.feed('HTTP/1.1 429 Too Many Requests\r\nretry-after: 5\r\ncontent-length: 2\r\n\r\n{}')
    expect(refused.status).toBe(429)
  })

  it('reads the limit on open files, which the streams must fit in', () => {
    const limits =
      'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            20000                1048576              files     \n'
    expect(openFilesLimitOf(limits)).toBe(20000)
    expect(openFilesLimitOf(limits.replace('20000', 'unlimited'))).toBe(Number.POSITIVE_INFINITY)
    expect(openFilesLimitOf('Max processes 100 100')).toBeNaN()
  })

  it('reads the open streams from /metrics', () => {
    expect(streamsGaugeOf('# TYPE edgeshop_sse_streams gauge\nedgeshop_sse_streams 5000\nedgeshop_sse_streams_x 1')).toBe(5000)
    expect(streamsGaugeOf('edgeshop_http_requests_total 3')).toBeNaN()
  })
})

describe('the figures of a run', () => {
  it('takes nearest-rank percentiles', () => {
    const ms = Array.from({ length: 100 }, (_, i) => 100 - i)
    expect(percentile(ms, 50)).toBe(50)
    expect(percentile(ms, 99)).toBe(99)
    expect(percentile(ms, 100)).toBe(100)
    expect(percentile([7], 99)).toBe(7)
    expect(percentile([], 50)).toBeNaN()
    expect(summarize([3, 1, 2])).toEqual({ events: 3, p50: 2, p99: 3, max: 3 })
  })

  it('gives the memory per stream as the growth of the RSS over the streams', () => {
    expect(kibPerStream(100_000, 150_000, 5_000)).toBe(10)
    expect(kibPerStream(100_000, 100_000, 0)).toBeNaN()
  })
})

describe('the idle-stream section of the report', () => {
  const stream = (runtime: string, kib: number): StreamsResult => ({
    runtime,
    streams: 5_000,
    rssBeforeKib: 102_400,
    rssAfterKib: 102_400 + kib * 5_000,
    kibPerStream: kib,
    openMs: 12_345,
    idle: { events: 100, p50: 2, p99: 5, max: 6 },
    loaded: { events: 100, p50: 3, p99: 8, max: 9.5 },
    idleAnswer: { events: 100, p50: 1.5, p99: 4, max: 4.5 },
    loadedAnswer: { events: 100, p50: 2.5, p99: 7, max: 7 },
    closeMs: 420,
    refused: 0,
    dropped: 0,
  })
  const results = onlyResults('streams', {
    date: '2026-12-07T00:10:00.000Z',
    durationSeconds: 150,
    plan: { idleStreams: 5_000, streamEvents: 100 },
    versions: { postgres: 'postgres (PostgreSQL) 15.18 (Debian)', edgeshop: 'abc1234', bun: '1.4.5', node: 'v24.1.0' },
    streams: [stream('Bun', 20), stream('Node', 40)],
  })

  it('gives each runtime’s memory per stream and latency beside the streams, without a target', () => {
    expect(targets(results).map((x) => [x.what, x.measured, x.target, x.met])).toEqual([
      ['Memory per idle order event stream, Bun, 5,000 streams', '20.0 KiB', '–', null],
      ['Order event latency p99 beside 5,000 idle streams, Bun (none open: 5.00 ms)', '8.00 ms', '–', null],
      ['Memory per idle order event stream, Node, 5,000 streams', '40.0 KiB', '–', null],
      ['Order event latency p99 beside 5,000 idle streams, Node (none open: 5.00 ms)', '8.00 ms', '–', null],
    ])
  })

  it('gives every runtime a row: the RSS without and with the streams, and the latency alone and beside them', () => {
    const text = renderStreams(results)
    for (const part of [
      '`./run bench --only streams`, 150 s; results in `bench/results/streams-2026-12-07.json`',
      '| Bun | 5,000 | 100.0 | 197.7 | 20.0 | 12.3 | 2.00 / 5.00 / 6.00 | 1.50 / 4.00 | 3.00 / 8.00 / 9.50 | 2.50 / 7.00 | 420 | 0 / 0 |',
      '| Node | 5,000 | 100.0 | 295.3 | 40.0 |',
      'Test CPU, 2 cores, shared: load average 3.3 / 2.0 / 1.0 (1 / 5 / 15 min) at the end',
      'latency over 100 status changes in each state, one at a time',
      'PostgreSQL 15.18, Bun 1.4.5, Node v24.1.0, edgeshop abc1234.',
    ])
      expect(text).toContain(part)
  })

  it('has the full run’s report point to the section, and list the figures among the targets', () => {
    const full: BenchResults = { ...results, only: undefined }
    expect(render(full).split('\n')).toEqual(
      expect.arrayContaining([
        '### 10. Idle order event streams: memory per stream, and event latency beside them',
        'In [Idle order event streams](#idle-order-event-streams).',
      ]),
    )
    expect(targets(full).map((x) => x.what)).toContain('Memory per idle order event stream, Node, 5,000 streams')
  })
})
