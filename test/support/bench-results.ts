import type { BenchResults, Measurement } from '../../bench/results.ts'

/*
 * Results files for the report's tests (test/unit/bench-*.test.ts): made-up
 * figures in the shape bench/run.ts writes.
 */

/** One run at `rps`, p50 1 ms and p99 9 ms, no failures, with `extra` fields. */
export const measurement = (rps: number, extra: Partial<Measurement> = {}): Measurement => ({
  rps,
  p50: 1,
  p99: 9,
  non2xx: 0,
  errors: 0,
  ...extra,
})

/** A case's runs: `x` `times` over, and `x` their median. */
export const runsOf = (x: Measurement, times = 1) => ({ runs: Array.from({ length: times }, () => x), median: x })

/** A scenario's results (`./run bench --only <only>`) on a 2-core test machine, with `over` in place of the defaults. */
export function onlyResults(only: string, over: Partial<BenchResults>): BenchResults {
  return {
    date: '2026-12-06T21:00:00.000Z',
    quick: false,
    durationSeconds: 120,
    command: `./run bench --only ${only}`,
    machine: { cpu: 'Test CPU', cores: 2, pinned: true, loadAverage: [3.25, 2, 1] },
    versions: { postgres: 'postgres (PostgreSQL) 15.18 (Debian)', edgeshop: 'abc1234' },
    plan: { seconds: 6, rounds: 3 },
    answerBytes: 343,
    cases: [],
    memoryMb: {},
    rssAfterMb: {},
    only,
    ...over,
  }
}
