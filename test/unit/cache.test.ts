import { describe, expect, it } from 'vitest'
import { type Cached, createCache } from '../../src/infra/cache.ts'
import { createLogger } from '../../src/observability/logger.ts'

/* The L1 half of the cache and its single flight (L2 is tested against real Redis in test/integration/catalog-cache.test.ts). */

const logger = createLogger({ level: 'silent' })
const value = (version: number, body = `v${version}`): Cached => ({ body, etag: `"${version}"`, version })

function deferred<T>() {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

/** `n` concurrent reads of one cold key whose loads wait for one gate; resolves with the answers and the loads made. */
async function concurrentMisses(cache: ReturnType<typeof createCache>, n: number) {
  let loads = 0
  const gate = deferred<void>()
  const readers = Array.from({ length: n }, () =>
    cache.entity('hot', async () => {
      loads++
      await gate.promise
      return value(1)
    }),
  )
  gate.resolve()
  return { answers: (await Promise.all(readers)).map((r) => r?.body), loads }
}

describe('L1 cache', () => {
  it('answers from memory until the TTL passes', async () => {
    let now = 1000
    const cache = createCache({ l1MaxEntries: 10, l1TtlMs: 2000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger, now: () => now })
    let loads = 0
    const load = async () => value(++loads)
    expect((await cache.entity('k', load))?.version).toBe(1)
    now += 1999
    expect((await cache.entity('k', load))?.version).toBe(1)
    now += 2
    expect((await cache.entity('k', load))?.version).toBe(2)
    expect(loads).toBe(2)
  })

  it('single flight: N concurrent misses for one key cost one load', async () => {
    const cache = createCache({ l1MaxEntries: 10, l1TtlMs: 2000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    const { answers, loads } = await concurrentMisses(cache, 100)
    expect(loads).toBe(1)
    expect(new Set(answers)).toEqual(new Set(['v1']))
  })

  it('a read after an invalidation never joins a load that started before it', async () => {
    const cache = createCache({ l1MaxEntries: 10, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    const slow = deferred<Cached>()
    const before = cache.entity('k', () => slow.promise)
    await cache.invalidateEntity('k', 2)
    const after = await cache.entity('k', async () => value(2))
    expect(after?.version).toBe(2)
    slow.resolve(value(1))
    expect((await before)?.version).toBe(1)
    // The old load finished after the write: it must not have replaced the new value.
    expect((await cache.entity('k', async () => value(99)))?.version).toBe(2)
  })

  it('without shared loads (Workers) every concurrent miss loads for itself, and L1 keeps the value', async () => {
    const cache = createCache({ shareLoads: false, l1MaxEntries: 10, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    const { answers, loads } = await concurrentMisses(cache, 5)
    expect(answers).toEqual(['v1', 'v1', 'v1', 'v1', 'v1'])
    expect(loads).toBe(5)
    expect(cache.peek('hot')?.version).toBe(1)
  })

  it('without shared loads, no load that a write followed fills L1 — of an entity or of a collection page', async () => {
    const cache = createCache({ shareLoads: false, l1MaxEntries: 10, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    const slow = [deferred<Cached>(), deferred<Cached>()]
    const first = cache.entity('k', () => slow[0]!.promise)
    const second = cache.entity('k', () => slow[1]!.promise)
    const page = deferred<Cached>()
    const oldPage = cache.page('products', 'p1', () => page.promise)
    await cache.invalidateEntity('k', 2)
    await cache.invalidateCollection('products')
    slow[1]!.resolve(value(1))
    slow[0]!.resolve(value(1))
    page.resolve(value(1, 'old page'))
    await Promise.all([first, second, oldPage])
    expect(cache.peek('k')).toBeUndefined()
    expect((await cache.entity('k', async () => value(2)))?.version).toBe(2)
    expect((await cache.page('products', 'p1', async () => value(2, 'new page'))).body).toBe('new page')
  })

  it('tells a load after an invalidation when it happened, so that it reads nothing older (a lagging replica)', async () => {
    const cache = createCache({ l1MaxEntries: 10, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    const asked: (number | undefined)[] = []
    const load = async (after?: number) => {
      asked.push(after)
      return value(1)
    }
    await cache.entity('k', load)
    await cache.page('products', 'p1', load)
    expect(asked).toEqual([undefined, undefined])
    const before = Date.now()
    await cache.invalidateEntity('k', 2)
    await cache.invalidateCollection('products')
    await cache.entity('k', load)
    await cache.page('products', 'p1', load)
    await cache.entity('other', load)
    expect(asked[2]).toBeGreaterThanOrEqual(before)
    expect(asked[3]).toBeGreaterThanOrEqual(before)
    expect(asked[4]).toBeUndefined()
  })

  it('remembers "not found" briefly, so unknown ids do not hammer the database', async () => {
    const cache = createCache({ l1MaxEntries: 10, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    let loads = 0
    for (let i = 0; i < 5; i++)
      expect(
        await cache.entity('missing', async () => {
          loads++
          return null
        }),
      ).toBeNull()
    expect(loads).toBe(1)
  })

  /** Reads the keys in order from an L1 of three entries; returns the keys that had to be loaded. */
  async function loadsOf(keys: string[]): Promise<string[]> {
    const cache = createCache({ l1MaxEntries: 3, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    const loads: string[] = []
    for (const k of keys)
      await cache.entity(k, async () => {
        loads.push(k)
        return value(1, k)
      })
    return loads
  }

  it('is bounded: the least recently used entries go first', async () => {
    expect(await loadsOf(['a', 'b', 'c', 'a', 'd', 'a', 'b'])).toEqual(['a', 'b', 'c', 'd', 'b'])
  })

  it('is bounded when every entry was read: the oldest goes, never the one just stored', async () => {
    expect(await loadsOf(['a', 'b', 'c', 'a', 'b', 'c', 'd', 'd', 'b', 'c', 'a'])).toEqual(['a', 'b', 'c', 'd', 'a'])
  })

  it('L1 off (0 entries) loads every time', async () => {
    const cache = createCache({ l1MaxEntries: 0, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    let loads = 0
    for (let i = 0; i < 3; i++) await cache.entity('k', async () => value(++loads))
    expect(loads).toBe(3)
  })

  it('pages of a collection are dropped together when the collection changes', async () => {
    const cache = createCache({ l1MaxEntries: 10, l1TtlMs: 60_000, l2TtlSeconds: 60, l2TimeoutMs: 50, logger })
    let gen = 1
    const page = (k: string) => cache.page('products', k, async () => value(gen, `${k}@${gen}`))
    expect((await page('p1')).body).toBe('p1@1')
    expect((await page('p2')).body).toBe('p2@1')
    gen = 2
    expect((await page('p1')).body).toBe('p1@1')
    await cache.invalidateCollection('products')
    expect((await page('p1')).body).toBe('p1@2')
    expect((await page('p2')).body).toBe('p2@2')
  })
})
