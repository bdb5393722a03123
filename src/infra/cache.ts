import { SpanKind, trace } from '@opentelemetry/api'
import type { Redis } from '@upstash/redis'
import type { Logger } from '../observability/logger.ts'
import type { Metrics } from '../observability/metrics.ts'
import { throttledLog } from '../observability/throttle.ts'
import { inSpan, traced } from '../observability/tracing.ts'

/*
 * The read-through cache of the catalog: L1 in this process (an LRU with a
 * short TTL), L2 in Redis through @upstash/redis when configured.
 *
 * Values are the bytes that are sent, serialised once when they are loaded.
 *
 * Two kinds of entries:
 * - entities (a product by id) carry a version. A write leaves a tombstone
 *   with the new version in L2; a load sets L2 only through a compare-and-set
 *   that refuses to replace a newer version or a same-version value, so a
 *   load that read the database before the write can never put old bytes
 *   back.
 * - collections (list pages) belong to a generation; a write increments the
 *   generation and every page of the older one stops counting.
 *
 * A write evicts this instance's L1 at once (and detaches loads already in
 * flight, so a read after the write never joins a read from before it, and
 * their result is not kept in L1).
 * Other instances drop their L1 copy within the L1 TTL, then find the new
 * state in L2. Concurrent misses for one key share one load (single flight).
 * Redis errors and answers slower than the budget count as misses: the read
 * falls back to the database, Redis is skipped for a second, and the error is
 * logged once per interval and counted in /metrics. Writes (sets after a
 * load, invalidations and their retries) are at most {@link MAX_WRITES} at
 * once: past that a write is given up at once, as after its last retry, so
 * a Redis that stops answering holds a bounded number of calls (each ended by
 * the client's own bound, UPSTASH_TIMEOUT_MS), not one per write.
 *
 * Loads may read a replica that lags the primary (src/db/replicas.ts). So
 * that a load never puts back what a write replaced, each load is told the
 * time of the newest invalidation the cache knows of for its key (`after`,
 * ms since the epoch; the loader reads from a replica only if it has
 * replayed past it): this process's own invalidations, remembered for a
 * minute, and a collection's generation, which is the time of its last
 * invalidation. An entity loaded older than its L2 tombstone is loaded
 * again with `after` = Infinity (from the primary).
 */

/** Redis writes under way at once per process. */
const MAX_WRITES = 64
/** How long this process remembers when it invalidated a key: longer than any replica may lag (REPLICA_MAX_LAG_MS). */
const REMEMBER_INVALIDATIONS_MS = 60_000

/**
 * Loads a value. `after` (ms since the epoch): the value must reflect every
 * write committed before then; undefined when the cache knows of none.
 */
export type Load<T> = (after?: number) => Promise<T>

/**
 * Where a read hands the Redis write that stores what it loaded, so that the
 * write outlives the answer: the request's `waitUntil`. On Workers a write
 * left unawaited is cut off when the answer is sent, and L2 never filled.
 */
export type Keep = (work: Promise<unknown>) => void

/** A cached answer: its body as sent, its ETag, and the version it shows. */
export interface Cached {
  body: string
  etag: string
  version: number
}

export interface Cache {
  /** Whether a shared L2 (Redis) is in use. */
  readonly shared: boolean
  /** A versioned entity; `load` answers `null` for "does not exist" (kept in L1 only). */
  entity(key: string, load: Load<Cached | null>, keep?: Keep): Promise<Cached | null>
  /**
   * The entity's fresh L1 copy, synchronously, or undefined when this
   * process has none (expired, never loaded, known not to exist, L1 off).
   * Counts an L1 hit when it finds one and nothing otherwise: the caller
   * goes on to {@link Cache.entity}, which counts the miss.
   */
  peek(key: string): Cached | undefined
  /** Version `version` of `key` was just written: evict it here, and leave a tombstone in L2 that no older load can overwrite. */
  invalidateEntity(key: string, version: number): Promise<void>
  /** A page of a collection, valid for the collection's current generation. */
  page(collection: string, key: string, load: Load<Cached>, keep?: Keep): Promise<Cached>
  /** The collection changed: every cached page of it is stale. */
  invalidateCollection(collection: string): Promise<void>
}

export interface CacheOptions {
  /** Largest number of L1 entries; 0 turns L1 off. */
  l1MaxEntries: number
  /**
   * Whether concurrent misses of one key share one load (default true). Off
   * on Workers: a request that awaits a load another request started goes on
   * in that request's I/O context there, and its answer's body then belongs
   * to the other request — workerd fails it with a 500 ("Cannot perform I/O
   * on behalf of a different request"; docs/DECISIONS.md).
   */
  shareLoads?: boolean
  l1TtlMs: number
  /** Redis for L2; omitted: L1 only. */
  redis?: Redis | undefined
  l2TtlSeconds: number
  /** Budget of one L2 read; past it the read goes to the database. */
  l2TimeoutMs: number
  prefix?: string
  /** Traced work's lookups that miss L1 are `cache load` spans (what L2 answered, the load under it); its L1 hits, events. */
  traced?: boolean
  metrics?: Metrics | undefined
  logger: Logger
  now?: () => number
}

interface L1Entry {
  value: Cached | null
  expiresAt: number
  /** Read since it was stored or last given its second chance ({@link Lru}). */
  used: boolean
}

/**
 * A bounded map that drops the least recently used entries first, by the
 * CLOCK approximation of LRU ("second chance"): a hit only marks its entry,
 * and an insert into a full map visits the oldest entries in order, moving
 * each marked one to the young end unmarked, until it finds an unmarked one
 * to drop. Unlike moving the key on every hit (a `delete` and a `set`), a
 * hit leaves the map as it is: each of those moves changed the map's hash
 * table, and V8 makes the new table of a long-lived map in the old
 * generation, which was most of what Node's hot read promoted and the
 * cause of a mark-compact every few seconds (docs/DECISIONS.md). Among
 * entries read since their last visit, the order they leave in may differ
 * from exact LRU's; an entry read since its last visit is never dropped
 * before one that was not.
 */
class Lru {
  readonly map = new Map<string, L1Entry>()
  readonly max: number
  constructor(max: number) {
    this.max = max
  }
  get(key: string): L1Entry | undefined {
    const e = this.map.get(key)
    if (e) e.used = true
    return e
  }
  set(key: string, e: L1Entry) {
    if (this.max <= 0) return
    if (!this.map.delete(key)) {
      while (this.map.size >= this.max) {
        const [oldest, entry] = this.map.entries().next().value!
        this.map.delete(oldest)
        if (!entry.used) break
        entry.used = false
        this.map.set(oldest, entry)
      }
    }
    this.map.set(key, e)
  }
  delete(key: string) {
    this.map.delete(key)
  }
}

// KEYS[1] the entry; ARGV: version, encoded value, ttl ms, '1' when the value is a tombstone.
const CAS_SET = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '\\n', 1, true)
  local v = tonumber(string.sub(cur, 1, (sep or 0) - 1))
  local v2 = tonumber(ARGV[1])
  if v and v > v2 then return 0 end
  local tomb = (not sep) or sep == #cur
  if v and v == v2 and not tomb then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`

// KEYS[1] a collection's generation; ARGV[1] the time (ms). The new generation is that time, or one more than the
// current one when that is not older: it only grows, and it says when the collection last changed.
const NEXT_GENERATION = `
local t = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if t <= cur then t = cur + 1 end
redis.call('SET', KEYS[1], t)
return t`

/** A generation written by {@link NEXT_GENERATION} (a time since 2001), not a count from before generations were times. */
const generationTime = (gen: string) => {
  const n = Number(gen)
  return n > 1e12 ? n : undefined
}

/** The later of two optional times: what a load must reflect when two writes are known. */
export const later = (a: number | undefined, b: number | undefined) => (a === undefined ? b : b === undefined ? a : Math.max(a, b))

const encode = (v: Cached) => `${v.version}\n${v.etag}\n${v.body}`

function decode(raw: string): Cached | 'tombstone' | undefined {
  const a = raw.indexOf('\n')
  if (a < 0) return undefined
  if (a === raw.length - 1) return 'tombstone'
  const b = raw.indexOf('\n', a + 1)
  if (b < 0) return undefined
  const version = Number(raw.slice(0, a))
  if (!Number.isInteger(version)) return undefined
  return { version, etag: raw.slice(a + 1, b), body: raw.slice(b + 1) }
}

/**
 * @example
 * ```ts
 * const cache = createCache({ l1MaxEntries: 10_000, l1TtlMs: 2000, redis, l2TtlSeconds: 300, l2TimeoutMs: 50, logger })
 * const product = await cache.entity(`product:${id}`, () => loadProduct(id))
 * ```
 */
export function createCache(opts: CacheOptions): Cache {
  const now = opts.now ?? Date.now
  const prefix = opts.prefix ?? 'edgeshop:c:'
  const entities = new Lru(opts.l1MaxEntries)
  const pages = new Map<string, Lru>()
  const pagesOf = (collection: string) => {
    let lru = pages.get(collection)
    if (!lru) pages.set(collection, (lru = new Lru(opts.l1MaxEntries)))
    return lru
  }
  const shareLoads = opts.shareLoads ?? true
  /** Loads under way that later reads of their key join (with `shareLoads`). */
  const flights = new Map<string, Promise<Cached | null>>()
  // Written while loads were under way: key (or a collection's page prefix) → the write's number. A load that a write
  // followed does not fill L1. Kept only while some load is under way, so it holds what was written meanwhile.
  let loading = 0
  let writes = 0
  const writtenWhileLoading = new Map<string, number>()
  const redis = opts.redis
  const ttlMs = opts.l2TtlSeconds * 1000
  const cas = redis?.createScript<number>(CAS_SET)
  const nextGeneration = redis?.createScript<number>(NEXT_GENERATION)
  /** Keys (full) and collections this process invalidated, with when (wall clock, as replicas' positions are measured). */
  const invalidated = new Map<string, number>()
  const remember = (key: string) => {
    const t = Date.now()
    invalidated.delete(key)
    invalidated.set(key, t)
    for (const [k, at] of invalidated) {
      if (at > t - REMEMBER_INVALIDATIONS_MS && invalidated.size <= 100_000) break
      invalidated.delete(k)
    }
  }
  let l2PausedUntil = 0
  let writing = 0
  const logError = throttledLog(opts.logger, 'warn', 'cache L2 unavailable; serving from the database', 10_000)
  const lookups = opts.metrics?.counter('edgeshop_cache_lookups_total', 'Cache lookups by tier and result', ['tier', 'result'])
  // Counted on every hot read: its series found once.
  const l1Hits = lookups?.with({ tier: 'l1', result: 'hit' })
  const tracing = opts.traced === true
  /** An L2 lookup's result, counted, and on the `cache load` span of traced work. */
  const l2Answered = (result: 'hit' | 'miss' | 'tombstone') => {
    lookups?.inc({ tier: 'l2', result: result === 'tombstone' ? 'miss' : result })
    if (tracing) trace.getActiveSpan()?.setAttribute('cache.l2', result)
  }
  const errors = opts.metrics?.counter('edgeshop_cache_errors_total', 'Redis cache operations that failed or ran past their budget', ['op'])
  opts.metrics?.gauge('edgeshop_cache_l1_entries', 'Entries in this process’s L1 cache', () =>
    [...pages.values()].reduce((n, lru) => n + lru.map.size, entities.map.size),
  )

  const l2Usable = () => redis !== undefined && now() >= l2PausedUntil
  const failed = (op: string, err: unknown) => {
    errors?.inc({ op })
    l2PausedUntil = now() + 1000
    logError({ op, error: err instanceof Error ? err.message : String(err) })
  }

  /** An L2 call bounded by the read budget; undefined when it failed or was too slow. */
  async function bounded<T>(op: string, work: () => Promise<T>): Promise<T | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      return await Promise.race([
        work(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${opts.l2TimeoutMs} ms`)), opts.l2TimeoutMs)
        }),
      ])
    } catch (err) {
      failed(op, err)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  /** A write within {@link MAX_WRITES}; given up (and counted) when that many are under way. */
  async function write(op: string, work: () => Promise<unknown>): Promise<boolean> {
    if (writing >= MAX_WRITES) {
      failed(op, new Error(`${MAX_WRITES} Redis writes already under way`))
      return false
    }
    writing++
    try {
      await work()
      return true
    } catch (err) {
      failed(op, err)
      return false
    } finally {
      writing--
    }
  }

  /** Writes that must reach Redis (invalidations): retried in the background for a few seconds. */
  async function persistent(op: string, work: () => Promise<unknown>): Promise<void> {
    if (!redis) return
    for (let attempt = 0; attempt < 4; attempt++) {
      if (await write(op, work)) return
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt))
    }
  }

  /**
   * L1, else `fromL2` (which goes on to the database), its result kept in L1
   * unless `key` — or `group`, a collection's page prefix — was written while
   * it ran.
   */
  /** A write no one awaits: handed to `keep` when the caller gave one. */
  const kept = (keep: Keep | undefined, work: Promise<unknown>) => (keep ? keep(work) : void work)

  function readThrough(l1: Lru, key: string, fromL2: () => Promise<Cached | null | undefined>, group?: string): Promise<Cached | null> {
    const t = now()
    const hit = l1.get(key)
    if (hit && hit.expiresAt > t) {
      l1Hits?.inc()
      if (tracing && traced()) trace.getActiveSpan()!.addEvent('cache hit', { 'cache.tier': 'l1', 'cache.key': key })
      return Promise.resolve(hit.value)
    }
    if (opts.l1MaxEntries > 0) lookups?.inc({ tier: 'l1', result: 'miss' })
    const joined = shareLoads ? flights.get(key) : undefined
    if (joined) return joined
    const started = writes
    const writtenSince = (k: string | undefined) => k !== undefined && (writtenWhileLoading.get(k) ?? 0) > started
    loading++
    const lookUp =
      tracing && traced()
        ? () => inSpan('cache load', { 'cache.key': key, 'cache.l1': 'miss' }, fromL2, { kind: SpanKind.INTERNAL })
        : fromL2
    let flight: Promise<Cached | null> | undefined
    flight = (async () => {
      try {
        const value = (await lookUp()) ?? null
        if (!writtenSince(key) && !writtenSince(group)) l1.set(key, { value, expiresAt: now() + opts.l1TtlMs, used: false })
        return value
      } finally {
        if (flights.get(key) === flight) flights.delete(key)
        if (--loading === 0) writtenWhileLoading.clear()
      }
    })()
    if (shareLoads) flights.set(key, flight)
    return flight
  }

  /** `key` (or every page under the prefix `key`) was written: loads under way neither fill L1 nor are joined. */
  function detach(key: string, prefix = false) {
    if (loading > 0) writtenWhileLoading.set(key, ++writes)
    if (prefix) {
      for (const k of flights.keys()) if (k.startsWith(key)) flights.delete(k)
    } else flights.delete(key)
  }

  return {
    shared: redis !== undefined,

    entity(key, load, keep) {
      const full = prefix + key
      return readThrough(entities, full, async () => {
        let tombstone: number | undefined
        if (redis && l2Usable()) {
          const raw = await bounded('get', () => redis.get<string>(full))
          const found = typeof raw === 'string' ? decode(raw) : undefined
          if (found && found !== 'tombstone') {
            l2Answered('hit')
            return found
          }
          if (found === 'tombstone') tombstone = Number.parseInt(raw as string, 10)
          if (raw !== undefined) l2Answered(found === 'tombstone' ? 'tombstone' : 'miss')
        }
        let loaded = await load(invalidated.get(full))
        // Older than the write another instance left its tombstone for (or gone, where it wrote one): the load read a
        // replica that has not replayed that write yet. The primary has.
        if (tombstone !== undefined && (loaded === null || loaded.version < tombstone)) loaded = await load(Number.POSITIVE_INFINITY)
        if (loaded && cas && l2Usable())
          kept(
            keep,
            write('set', () => cas.exec([full], [String(loaded.version), encode(loaded), String(ttlMs), '0'])),
          )
        return loaded
      })
    },

    peek(key) {
      const hit = entities.get(prefix + key)
      if (hit === undefined || hit.value === null || hit.expiresAt <= now()) return undefined
      l1Hits?.inc()
      return hit.value
    },

    async invalidateEntity(key, version) {
      const full = prefix + key
      entities.delete(full)
      detach(full)
      remember(full)
      if (cas) await persistent('invalidate', () => cas.exec([full], [String(version), `${version}\n`, String(ttlMs), '1']))
    },

    async page(collection, key, load, keep) {
      const genKey = `${prefix}${collection}:gen`
      const pagesPrefix = `${prefix}${collection}:p:`
      const full = pagesPrefix + key
      const value = await readThrough(
        pagesOf(collection),
        full,
        async () => {
          let gen = '0'
          let changedAt: number | undefined
          if (redis && l2Usable()) {
            const got = await bounded('get', () => redis.mget<(string | null)[]>(genKey, full))
            if (got) {
              gen = got[0] ?? '0'
              changedAt = generationTime(gen)
              const raw = got[1]
              const nl = typeof raw === 'string' ? raw.indexOf('\n') : -1
              if (typeof raw === 'string' && nl > 0 && raw.slice(0, nl) === gen) {
                const found = decode(raw.slice(nl + 1))
                if (found && found !== 'tombstone') {
                  l2Answered('hit')
                  return found
                }
              }
              l2Answered('miss')
            }
          }
          const loaded = await load(later(invalidated.get(genKey), changedAt))
          if (redis && l2Usable())
            kept(
              keep,
              write('set', () => redis.set(full, `${gen}\n${encode(loaded)}`, { px: ttlMs })),
            )
          return loaded
        },
        pagesPrefix,
      )
      return value!
    },

    async invalidateCollection(collection) {
      const start = `${prefix}${collection}:p:`
      const genKey = `${prefix}${collection}:gen`
      pages.get(collection)?.map.clear()
      detach(start, true)
      remember(genKey)
      if (nextGeneration) await persistent('invalidate', () => nextGeneration.exec([genKey], [String(Date.now())]))
    },
  }
}
