import { describe, expect, it } from 'vitest'
import { type AbRow, compare, guardOutcome, parseAbArgs, renderAb, spread } from '../../bench/ab-report.ts'

/*
 * `./run bench --against <rev>` (bench/ab.ts): its arguments, and how each
 * figure's medians become a ratio, a spread and a verdict against the 5 %
 * guard (bench/ab-report.ts).
 */

describe('the arguments of ./run bench --against', () => {
  it('defaults to every case, 6 rounds of 5 s', () => {
    expect(parseAbArgs(['--against', 'main'])).toEqual({
      against: 'main',
      cases: ['hot-read', 'checkout', 'bundle'],
      rounds: 6,
      seconds: 5,
      warmSeconds: 2,
      quick: false,
      traced: false,
    })
    expect(parseAbArgs(['--against', 'HEAD', '--traced'])).toMatchObject({ against: 'HEAD', traced: true })
  })

  it('--quick shortens the rounds, and the explicit settings win over it wherever they stand', () => {
    expect(parseAbArgs(['--rounds', '4', '--against', 'HEAD~1', '--quick'])).toMatchObject({
      rounds: 4,
      seconds: 1,
      warmSeconds: 1,
      quick: true,
    })
    expect(parseAbArgs(['--quick', '--against', 'v1', '--seconds', '3'])).toMatchObject({ rounds: 2, seconds: 3 })
  })

  it('takes the cases as a list, in the order the run measures them, and an output file', () => {
    expect(parseAbArgs(['--against', 'x', '--cases', 'bundle,hot-read', '--out', '/tmp/ab.json'])).toMatchObject({
      cases: ['hot-read', 'bundle'],
      out: '/tmp/ab.json',
    })
  })

  it.each([
    [[], '--against needs a git revision'],
    [['--against'], '--against needs a value'],
    [['--against', '--quick'], '--against needs a value'],
    [['--against', 'x', '--cases', 'hot-read,login'], 'not login'],
    [['--against', 'x', '--cases', ','], 'not nothing'],
    [['--against', 'x', '--rounds', '0'], '--rounds takes a whole number of at least 1, not 0'],
    [['--against', 'x', '--seconds', '1.5'], '--seconds takes a whole number of at least 1, not 1.5'],
    [['--against', 'x', '--round', '3'], 'unknown argument --round'],
  ])('refuses %j', (argv, message) => {
    expect(() => parseAbArgs(argv)).toThrow(message)
  })
})

const row = (over: Partial<AbRow>): AbRow => ({ case: 'hot-read', name: 'Bun', unit: 'req/s', better: 'higher', a: [], b: [], ...over })

describe('a figure compared against the 5 % guard', () => {
  it('gives each side its median, B/A and the spread of its rounds', () => {
    const c = compare(row({ a: [100, 90, 110, 105], b: [95, 97, 99, 101] }))
    expect(c.medianA).toBe(102.5)
    expect(c.medianB).toBe(98)
    expect(c.ratio).toBeCloseTo(98 / 102.5, 10)
    expect(c.spreadA).toBeCloseTo(20 / 102.5, 10)
    expect(c.spreadB).toBeCloseTo(6 / 98, 10)
    expect(c.roundRatios).toEqual([0.95, 97 / 90, 0.9, 101 / 105])
    expect(spread([5])).toBe(0)
    expect(compare(row({ a: [5], b: [5] })).roundRatios).toEqual([])
  })

  it('a rate 5 % lower is within the guard, a little more is worse, 5 % higher or more is better', () => {
    expect(compare(row({ a: [100], b: [95] })).verdict).toBe('within')
    expect(compare(row({ a: [100], b: [94.9] })).verdict).toBe('worse')
    expect(compare(row({ a: [100], b: [94.9] })).change).toBeCloseTo(0.051, 10)
    expect(compare(row({ a: [100], b: [104] })).verdict).toBe('within')
    expect(compare(row({ a: [100], b: [106] })).verdict).toBe('better')
  })

  it('for a size lower is better: 5 % larger is within, more is worse', () => {
    const size = (a: number, b: number) => compare(row({ case: 'bundle', name: 'gzip', unit: 'bytes', better: 'lower', a: [a], b: [b] }))
    expect(size(1000, 1050).verdict).toBe('within')
    expect(size(1000, 1051).verdict).toBe('worse')
    expect(size(1000, 900).verdict).toBe('better')
  })

  it('marks a side whose rounds spread wider than the guard as noisy', () => {
    expect(compare(row({ a: [100, 100, 100], b: [90, 100, 96] })).noisy).toBe(true)
    expect(compare(row({ a: [100, 102, 98], b: [99, 100, 101] })).noisy).toBe(false)
  })

  it('does not settle a gap past the guard that is smaller than the spread of the rounds', () => {
    // 18 % behind, but each side's rounds spread over more than that: a loaded machine, not a verdict.
    const loaded = compare(row({ a: [266, 253, 208, 505, 755, 782], b: [316, 203, 313, 248, 635, 524] }))
    expect(loaded.change).toBeCloseTo(1 - 314.5 / 385.5, 10)
    expect(loaded.verdict).toBe('unsettled')
    // 8 % behind with rounds within 3 % of each other: settled.
    expect(compare(row({ a: [100, 101, 99, 100], b: [92, 93, 91, 92] })).verdict).toBe('worse')
  })

  it('gives no verdict where a side had failed requests or no figure', () => {
    expect(compare(row({ a: [100], b: [100], failures: { a: 0, b: 3 } })).verdict).toBe('invalid')
    expect(compare(row({ a: [], b: [100] })).verdict).toBe('invalid')
  })
})

describe('the guard over all figures', () => {
  const within = compare(row({ a: [100, 101], b: [100, 99] }))
  const worse = compare(row({ a: [100, 101], b: [90, 91] }))
  const unsettled = compare(row({ a: [100, 200], b: [90, 150] }))
  it('is missed where a figure is worse or invalid, not settled where one is unsettled, else met', () => {
    expect(guardOutcome([within, unsettled, worse])).toEqual({ outcome: 'missed', missed: [worse], unsettled: [unsettled] })
    expect(guardOutcome([within, unsettled]).outcome).toBe('unsettled')
    expect(guardOutcome([within]).outcome).toBe('met')
    const text = renderAb([within, unsettled], { a: 'a', b: 'b' }, { rounds: 2, seconds: 1 })
    expect(text).toContain(
      '| Bun | 150 | 120 | 0.800× | 66.7 % | 50.0 % | 0.750–0.900 | not settled: 20.0 % behind, less than the spread |',
    )
    expect(text).toContain(
      "Guard (B within 5 % of A): not settled on Hot read, Bun: B measured behind by more than 5 % but by less than the rounds' spread; run again with more rounds (--rounds) or on a quieter machine.",
    )
  })
})

describe('the printed tables', () => {
  it('show a table per case, each side, B/A, the spreads and the verdict, and the guard over all', () => {
    const text = renderAb(
      [
        compare(row({ a: [1000, 1010], b: [900, 905] })),
        compare(row({ case: 'checkout', unit: 'orders/s', a: [300, 310], b: [301, 305] })),
        compare(row({ case: 'bundle', name: 'minified + gzip -9', unit: 'bytes', better: 'lower', a: [255_524], b: [255_524] })),
      ],
      { a: 'main (abc)', b: 'working tree (def)' },
      { rounds: 2, seconds: 5 },
    )
    const lines = text.split('\n')
    for (const line of [
      '### Hot read: GET /v1/products/{id} from L1 (req/s, higher is better; 2 rounds of 5 s per side, interleaved)',
      '| | A: main (abc) | B: working tree (def) | B/A | spread A | spread B | B/A by round | verdict |',
      '| Bun | 1,005 | 903 | 0.898× | 1.0 % | 0.6 % | 0.896–0.900 | **worse** by 10.2 % |',
      '| Bun | 305 | 303 | 0.993× | 3.3 % | 1.3 % | 0.984–1.003 | within 5 % |',
      '| minified + gzip -9 | 255,524 | 255,524 | 1.000× | 0.0 % | 0.0 % | – | within 5 % |',
      'Guard (B within 5 % of A): **missed** on Hot read, Bun.',
    ])
      expect(lines).toContain(line)
  })
})
