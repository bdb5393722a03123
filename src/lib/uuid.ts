let lastMs = 0
let seq = 0

/*
 * Random bytes come from a pool drawn 4 KiB at a time: one call into the
 * CSPRNG per 256 ids rather than one per id, which showed up at ~1% of a
 * checkout's CPU time on Node. Each byte is handed out once. Filled lazily:
 * Workers forbid random values at module scope.
 */
const POOL_BYTES = 4096
let pool: Uint8Array | undefined
let poolAt = POOL_BYTES

function randomBytes(n: number): Uint8Array {
  if (poolAt + n > POOL_BYTES) {
    pool ??= new Uint8Array(POOL_BYTES)
    crypto.getRandomValues(pool)
    poolAt = 0
  }
  const bytes = pool!.slice(poolAt, poolAt + n)
  poolAt += n
  return bytes
}

/**
 * A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then random
 * bits. Ids made later sort later, so "newest first" is an index scan on the
 * primary key, and inserts land at the right edge of the B-tree instead of
 * all over it. Within one millisecond a 12-bit counter keeps ids of this
 * process increasing.
 *
 * @example
 * ```ts
 * const id = uuidv7() // '01932c07-3e4f-7a2b-8c1d-9e0f1a2b3c4d'
 * ```
 */
export function uuidv7(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now
    seq = 0
  } else if (++seq > 0xfff) {
    lastMs++
    seq = 0
  }
  const ms = lastMs
  const bytes = randomBytes(16)
  bytes[0] = Math.floor(ms / 2 ** 40) & 0xff
  bytes[1] = Math.floor(ms / 2 ** 32) & 0xff
  bytes[2] = (ms >>> 24) & 0xff
  bytes[3] = (ms >>> 16) & 0xff
  bytes[4] = (ms >>> 8) & 0xff
  bytes[5] = ms & 0xff
  bytes[6] = 0x70 | ((seq >>> 8) & 0x0f)
  bytes[7] = seq & 0xff
  bytes[8] = 0x80 | (bytes[8]! & 0x3f)
  let hex = ''
  for (let i = 0; i < 16; i++) hex += HEX[bytes[i]!]
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** True when `s` is a UUID in canonical text form. */
export const isUuid = (s: string) => UUID.test(s)
