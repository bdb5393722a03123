import { describe, expect, it } from 'vitest'
import { isUuid, uuidv7 } from '../../src/lib/uuid.ts'

describe('uuidv7', () => {
  it('is a version 7, variant 10 UUID carrying the time', () => {
    const now = Date.UTC(2026, 10, 22, 12, 0, 0)
    const id = uuidv7(now)
    expect(isUuid(id)).toBe(true)
    expect(id[14]).toBe('7')
    expect('89ab').toContain(id[19])
    expect(Number.parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBeGreaterThanOrEqual(now)
  })

  it('sorts in creation order, also within one millisecond and when the clock steps back', () => {
    const ids = [uuidv7(5_000_000), uuidv7(5_000_000), uuidv7(5_000_000), uuidv7(4_000_000), uuidv7(6_000_000)]
    for (let i = 1; i < 5000; i++) ids.push(uuidv7())
    const sorted = [...ids].sort()
    expect(sorted).toEqual(ids)
    expect(new Set(ids).size).toBe(ids.length)
  })

  it('draws fresh random bits for every id, across refills of the random pool', () => {
    // 2,000 ids take 32 KB of random bytes, eight refills of the pool: no random tail may come back.
    const tails = Array.from({ length: 2000 }, () => uuidv7(7_000_000).replace(/-/g, '').slice(16))
    expect(new Set(tails).size).toBe(tails.length)
    // And one random byte takes most of its 256 values over 2,000 ids.
    expect(new Set(tails.map((t) => t.slice(2, 4))).size).toBeGreaterThan(200)
  })
})
