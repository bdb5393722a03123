import { describe, expect, it } from 'vitest'
import { lagMsOf, readsOf, replicaShare } from '../../bench/replicas.ts'
import { render, renderReplicas, targets } from '../../bench/report.ts'
import { type BenchResults, type Measurement, REPLICAS_CASES } from '../../bench/results.ts'
import { measurement, onlyResults, runsOf } from '../support/bench-results.ts'

/*
 * The read-replica scenario of `./run bench` (bench/replicas.ts): what it
 * reads from edgeshop's /metrics, and the section of docs/BENCHMARKS.md its
 * results become. No figure is asserted.
 */

describe('what a run reads from /metrics', () => {
  const metrics = [
    '# TYPE edgeshop_db_reads_total counter',
    'edgeshop_db_reads_total{target="replica1",reason="healthy"} 900',
    'edgeshop_db_reads_total{target="primary",reason="read_your_writes"} 60',
    'edgeshop_db_reads_total{target="primary",reason="no_healthy_replica"} 40',
    'edgeshop_replica_lag_seconds{replica="replica1"} 0.012',
    'edgeshop_replica_lag_bytes{replica="replica1"} 0',
  ].join('\n')

  it('counts reads by where they ran, over every reason', () => {
    expect(readsOf(metrics)).toEqual({ replica1: 900, primary: 100 })
  })

  it('takes the first replica’s lag in ms, and none before its first poll', () => {
    expect(lagMsOf(metrics)).toBe(12)
    expect(lagMsOf('edgeshop_replica_up{replica="replica1"} 0')).toBeNaN()
  })

  it('gives the share of a run’s reads the replica answered, from the counts before and after', () => {
    expect(replicaShare({ replica1: 100, primary: 50 }, { replica1: 400, primary: 150 })).toBe(0.75)
    expect(replicaShare({}, { primary: 10 })).toBe(0)
    // A server without replicas counts no routed reads.
    expect(replicaShare({}, {})).toBeNaN()
  })
})

describe('the read-replica section of the report', () => {
  const m = (rps: number, extra: Partial<Measurement> = {}) => measurement(rps, { writesPerSecond: 100, ...extra })
  const runs = (x: Measurement) => runsOf(x, 3)
  const onReplica = { replicaReads: 1, lagMedianMs: 3, lagMaxMs: 250 }
  const results = onlyResults('replicas', {
    date: '2026-12-06T21:30:00.000Z',
    durationSeconds: 110,
    machine: { cpu: 'Test CPU', cores: 2, pinned: true, loadAverage: [4, 3, 2] },
    plan: { seconds: 6, rounds: 3, replicaConnections: 32, replicaWritesPerSecond: 100 },
    cases: [
      { scenario: 'replicas', name: `Bun, ${REPLICAS_CASES.alone}`, ...runs(m(4_000, { replicaReads: Number.NaN })) },
      { scenario: 'replicas', name: `Bun, ${REPLICAS_CASES.replica}`, ...runs(m(3_000, onReplica)) },
      { scenario: 'replicas', name: `Node, ${REPLICAS_CASES.alone}`, ...runs(m(2_000, { replicaReads: Number.NaN })) },
      { scenario: 'replicas', name: `Node, ${REPLICAS_CASES.replica}`, ...runs(m(2_000, onReplica)) },
    ],
  })

  it('gives each runtime’s replica case against its primary alone, as a ratio without a target', () => {
    expect(targets(results).map((x) => [x.what, x.target, x.met])).toEqual([
      [`List page, caching off, Bun, ${REPLICAS_CASES.replica} vs the ${REPLICAS_CASES.alone}`, '–', null],
      [`List page, caching off, Node, ${REPLICAS_CASES.replica} vs the ${REPLICAS_CASES.alone}`, '–', null],
    ])
  })

  it('gives every case a row: the ratio, where the reads went, the lag and the writes beside it', () => {
    const text = renderReplicas(results)
    expect(text).toContain('`./run bench --only replicas`, 110 s; results in `bench/results/replicas-2026-12-06.json`')
    expect(text).toContain('![9. Read replicas')
    expect(text).toContain(
      '| case | req/s (median) | p50 ms | p99 ms | ratio | ratio by round | reads on the replica | replica lag ms, median / max | updates/s on the primary |',
    )
    expect(text).toContain(`| Bun, ${REPLICAS_CASES.alone} | 4,000 | 1.00 | 9.00 |  |  | – |  | 100 | 0 | 0 | 4,000, 4,000, 4,000 |`)
    expect(text).toContain(
      `| Bun, ${REPLICAS_CASES.replica} | 3,000 | 1.00 | 9.00 | 0.75× ${REPLICAS_CASES.alone} | 0.75×, 0.75×, 0.75× | 100.0 % | 3.00 / 250.00 | 100 |`,
    )
    expect(text).toContain(`| Node, ${REPLICAS_CASES.replica} | 2,000 | 1.00 | 9.00 | 1.00× ${REPLICAS_CASES.alone} |`)
    expect(text).toContain('Test CPU, 2 cores, shared: load average 4.0 / 3.0 / 2.0 (1 / 5 / 15 min) at the end')
    expect(text).toContain('3 rounds of 6 s; 32 connections; PostgreSQL 15.18, edgeshop abc1234.')
  })

  it('has the full run’s report point to the section, and leave out the Workers bundle when none was built', () => {
    const full: BenchResults = { ...results, only: undefined }
    const text = render(full)
    expect(text).toContain('### 9. Read replicas')
    expect(text).toContain('In [Read replicas](#read-replicas).')
    expect(targets(full).map((x) => x.what)).not.toContain('Worker bundle, minified + gzip')
  })
})
