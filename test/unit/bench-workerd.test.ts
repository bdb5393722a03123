import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { renderWorkerd, targets } from '../../bench/report.ts'
import { type Measurement, WORKERD_CASES } from '../../bench/results.ts'
import { statCpuMs, workerdConfig } from '../../bench/workerd.ts'
import { ROOT } from '../support/app-server.ts'
import { measurement, onlyResults, runsOf } from '../support/bench-results.ts'

/*
 * The Workers scenario of `./run bench` (bench/workerd.ts): the bare worker
 * it measures edgeshop against, the workerd config that serves them side by
 * side, how CPU time is read from /proc, and the section of
 * docs/BENCHMARKS.md its results become. No figure is asserted.
 */

type Bare = { fetch(request: Request, env: Record<string, string>): Response }

describe('the bare worker', () => {
  it('answers the bytes and headers it is given, with a request id of its own each time', async () => {
    const body = '{"id":"0192","name":"Mug «blue»","priceCents":1999}'
    const headers = {
      'content-type': 'application/json',
      etag: 'W/"abc"',
      'cache-control': 'public, max-age=5',
      'x-content-type-options': 'nosniff',
      'x-request-id': 'from-edgeshop',
    }
    const module = join(ROOT, 'bench/limit/worker.js')
    const bare = ((await import(module)) as { default: Bare }).default
    const env = { BODY: body, HEADERS: JSON.stringify(headers) }
    const [a, b] = [bare.fetch(new Request('http://bare/v1/products/x'), env), bare.fetch(new Request('http://bare/'), env)]
    expect(await a.text()).toBe(body)
    expect(a.status).toBe(200)
    const { 'x-request-id': _, ...rest } = headers
    expect(Object.fromEntries(a.headers)).toMatchObject(rest)
    expect(Object.fromEntries(a.headers)).not.toHaveProperty('x-request-id', 'from-edgeshop')
    expect(a.headers.get('x-request-id')).not.toBe(b.headers.get('x-request-id'))
    expect(await b.text()).toBe(body)
  })
})

describe('the workerd config', () => {
  const config = workerdConfig(
    [
      {
        name: 'edgeshop',
        module: 'edgeshop.js',
        bindings: { LOG_LEVEL: 'info' },
        hyperdrive: { database: 'bench', user: 'postgres', password: 'p"w' },
      },
      { name: 'bare', module: 'bare.js', bindings: { BODY: '{"a":"b"}' } },
    ],
    { bare: 4321 },
    '127.0.0.1:5432',
  )

  it('serves each worker on a socket of its own, at its port or one set on the command line', () => {
    expect(config).toContain('(name = "edgeshop", address = "127.0.0.1:0", http = (), service = "edgeshop")')
    expect(config).toContain('(name = "bare", address = "127.0.0.1:4321", http = (), service = "bare")')
    expect(config).toContain('esModule = embed "edgeshop.js"')
  })

  it('binds Hyperdrive to PostgreSQL over TCP, and settings as text, escaped', () => {
    expect(config).toContain('(name = "postgres", external = (address = "127.0.0.1:5432", tcp = ()))')
    expect(config).toContain(
      '(name = "HYPERDRIVE", hyperdrive = (designator = (name = "postgres"), database = "bench", user = "postgres", password = "p\\"w", scheme = "postgresql"))',
    )
    expect(config).toContain('(name = "BODY", text = "{\\"a\\":\\"b\\"}")')
    expect(config.match(/hyperdrive =/g)).toHaveLength(1)
    expect(config).toMatch(/compatibilityDate = "\d{4}-\d{2}-\d{2}"/)
  })
})

describe('CPU time from /proc/<pid>/stat', () => {
  // Fields 14-17 (utime, stime, cutime, cstime) are 120, 30, 1000, 500 ticks; the name holds spaces and parentheses.
  const stat = '4242 (work (er) d) S 1 4242 4242 0 -1 4194560 900 0 0 0 120 30 1000 500 20 0 9 0 100 1000 200'

  it('reads user + system time, counting fields after the name', () => {
    expect(statCpuMs(stat, { tickMs: 10 })).toBe(1500)
  })

  it('adds the reaped children’s time when asked (PostgreSQL’s ended backends)', () => {
    expect(statCpuMs(stat, { tickMs: 10, children: true })).toBe(16500)
  })
})

describe('the Workers section of the report', () => {
  const m = (rps: number, cpuMs: number, dbCpuMs = 0, dbSessions = 0) => measurement(rps, { cpuMs, dbCpuMs, dbSessions })
  const runs = (x: Measurement) => runsOf(x)
  const results = onlyResults('workerd', {
    versions: { workerd: '2026-11-17', postgres: 'postgres (PostgreSQL) 15.18 (Debian)', edgeshop: 'abc1234' },
    plan: { seconds: 6, rounds: 3, hotConnections: 64, checkoutConnections: 16 },
    cases: [
      { scenario: 'workerd', name: WORKERD_CASES.bare, ...runs(m(10_000, 0.05)) },
      { scenario: 'workerd', name: WORKERD_CASES.hot, ...runs(m(8_000, 0.1)) },
      { scenario: 'workerd', name: WORKERD_CASES.list, ...runs(m(2_000, 0.6, 0.01)) },
      { scenario: 'workerd', name: WORKERD_CASES.checkout, ...runs(m(100, 12, 10, 1)) },
      { scenario: 'workerd', name: WORKERD_CASES.login, ...runs(m(40, 20, 6)) },
    ],
    worker: { bytes: 1_000_000, gzipBytes: 256_000, coldStartMs: 120, emptyWorkerColdStartMs: 30 },
  })

  it('holds the hot read to the bare worker and every route but login to its CPU target', () => {
    const t = targets(results)
    expect(t.map((x) => [x.what, x.met])).toEqual([
      ['Hot read in workerd vs a bare worker in the same workerd', true],
      [`CPU per request in workerd, ${WORKERD_CASES.hot}`, true],
      [`CPU per request in workerd, ${WORKERD_CASES.list}`, true],
      [`CPU per request in workerd, ${WORKERD_CASES.checkout}`, false],
      [`CPU per request in workerd, ${WORKERD_CASES.login}`, null],
      ['Worker bundle, minified + gzip', true],
    ])
  })

  it('gives each route a row with its ratio to the bare worker and its CPU per request, workerd and PostgreSQL apart', () => {
    const text = renderWorkerd(results)
    expect(text).toContain('`./run bench --only workerd`, 120 s; results in `bench/results/workerd-2026-12-06.json`')
    expect(text).toContain('| Hot read in workerd vs a bare worker in the same workerd | 0.80× | ≥ 0.70× | met |')
    expect(text).toContain(`| ${WORKERD_CASES.hot} | 8,000 | 1.00 | 9.00 | 0.80× bare worker | 0.10 | 0.00 | 0.00 | 0 | 0 | 8,000 |`)
    expect(text).toContain(`| ${WORKERD_CASES.checkout} | 100 | 1.00 | 9.00 |  | 12.00 | 10.00 | 1.00 | 0 | 0 | 100 |`)
    expect(text).toContain(`| CPU per request in workerd, ${WORKERD_CASES.checkout} | 12.00 ms | < 10 ms | **missed** |`)
    expect(text).toContain('| bundle, minified + gzip -9 | 250 KiB |')
    expect(text).toContain('| cold start in workerd, to the first answer | 120 ms |')
    expect(text).toContain('Test CPU, 2 cores, shared: load average 3.3 / 2.0 / 1.0 (1 / 5 / 15 min) at the end')
    expect(text).toContain('workerd 2026-11-17, PostgreSQL 15.18, edgeshop abc1234')
  })
})
