import { createHash, randomBytes } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { Ratelimit } from '@upstash/ratelimit'
import { Redis } from '@upstash/redis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RedisServerHandle, startRedisServer } from '../support/redis-server.ts'
import { createRespClient, type RespClient, RespConnectionError, RespError, type RespValue } from '../support/resp.ts'
import { startUpstashRest, type UpstashRestHandle } from '../support/upstash-rest.ts'

const TOKEN = 'test-token-123'
const sha1 = (s: string): string => createHash('sha1').update(s).digest('hex')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const uid = (): string => randomBytes(6).toString('hex')

let redisServer: RedisServerHandle
let rest: UpstashRestHandle
let resp: RespClient

beforeAll(async () => {
  redisServer = await startRedisServer()
  rest = await startUpstashRest({ redisPort: redisServer.port, token: TOKEN })
  resp = createRespClient({ port: redisServer.port, commandTimeoutMs: 5000 })
}, 20_000)

afterAll(async () => {
  await resp?.close()
  await rest?.close()
  await redisServer?.stop()
}, 20_000)

/** Raw request to the stand-in, to check the wire format the client never shows. */
async function raw(
  path: string,
  body?: unknown,
  init: { method?: string; headers?: Record<string, string>; rawBody?: string } = {},
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(rest.url + path, {
    method: init.method ?? 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, ...init.headers },
    ...(init.rawBody !== undefined ? { body: init.rawBody } : body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, json: JSON.parse(await res.text()) }
}
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64')

// ---------------------------------------------------------------------------
describe('RESP client', () => {
  it('maps every RESP2 reply type', async () => {
    const k = `resp:${uid()}`
    expect(await resp.send(['PING'])).toBe('PONG')
    expect(await resp.send(['SET', k, 'välue'])).toBe('OK')
    const got = await resp.send(['GET', k])
    expect(Buffer.isBuffer(got)).toBe(true)
    expect((got as Buffer).toString('utf8')).toBe('välue')
    expect(await resp.send(['GET', `${k}:missing`])).toBeNull()
    expect(await resp.send(['INCRBY', `${k}:n`, -5])).toBe(-5)
    const err = await resp.send(['INCR', k])
    expect(err).toBeInstanceOf(RespError)
    expect((err as RespError).message).toBe('ERR value is not an integer or out of range')
    expect((err as RespError).code).toBe('ERR')
    const nested = await resp.send(['EVAL', "return {1, {'a', {2}}, 'b'}", 0])
    expect(nested).toEqual([1, [Buffer.from('a'), [2]], Buffer.from('b')])
    expect(await resp.send(['EVAL', 'return {}', 0])).toEqual([])
    // RESP2 null array: BLPOP timing out.
    expect(await resp.send(['BLPOP', `${k}:nolist`, '0.01'])).toBeNull()
  })

  it('pipelines many commands on one socket and matches replies in order', async () => {
    const k = `resp:pipe:${uid()}`
    const promises: Promise<RespValue>[] = []
    for (let i = 0; i < 2000; i++) promises.push(resp.send(['INCR', k]))
    expect(resp.inFlight).toBeGreaterThan(1)
    const replies = await Promise.all(promises)
    expect(replies).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1))
    // Mixed reply types in flight together
    const mixed = await Promise.all([
      resp.send(['SET', `${k}:s`, 'x']),
      resp.send(['GET', `${k}:s`]),
      resp.send(['LPUSH', `${k}:s`, 'y']), // WRONGTYPE
      resp.send(['GET', k]),
    ])
    expect(mixed[0]).toBe('OK')
    expect(mixed[1]).toEqual(Buffer.from('x'))
    expect((mixed[2] as RespError).message).toMatch(/^WRONGTYPE/)
    expect(mixed[3]).toEqual(Buffer.from('2000'))
  })

  it('round-trips a 1 MB binary value (reply split over many TCP chunks)', async () => {
    const k = `resp:big:${uid()}`
    const big = randomBytes(1024 * 1024)
    expect(await resp.send(['SET', k, big])).toBe('OK')
    // Alone (nothing follows the bulk string on the wire) ...
    const alone = await resp.send(['GET', k])
    expect(Buffer.isBuffer(alone)).toBe(true)
    expect((alone as Buffer).equals(big)).toBe(true)
    // ... and with more replies right behind it.
    const [got, len, after] = await Promise.all([resp.send(['GET', k]), resp.send(['STRLEN', k]), resp.send(['ECHO', 'after-big'])])
    expect(len).toBe(big.length)
    expect(Buffer.isBuffer(got)).toBe(true)
    expect((got as Buffer).equals(big)).toBe(true)
    expect(after).toEqual(Buffer.from('after-big'))
    // A large array reply (many elements, many chunks).
    const many = Array.from({ length: 20_000 }, (_, i) => `m${i}`)
    await resp.send(['RPUSH', `${k}:l`, ...many])
    const list = (await resp.send(['LRANGE', `${k}:l`, 0, -1])) as Buffer[]
    expect(list.length).toBe(many.length)
    expect(list[19_999]?.toString()).toBe('m19999')
  })

  describe('against a scripted fake server', () => {
    let fake: Server
    let fakePort: number
    let connections = 0
    let mode: 'byte-by-byte' | 'one-chunk' | 'drop' | 'silent' = 'byte-by-byte'
    const REPLIES = '+OK\r\n-ERR boom\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n*-1\r\n$0\r\n\r\n*-1\r\n'
    const EXPECTED: RespValue[] = [
      'OK',
      new RespError('ERR boom'),
      42,
      Buffer.from('hello'),
      null,
      [1, [Buffer.from('a'), null], Buffer.alloc(0)],
      null,
    ]

    beforeAll(async () => {
      fake = createServer((sock: Socket) => {
        connections++
        let received = ''
        sock.on('data', async (d) => {
          received += d.toString('latin1')
          const count = received.split('*1\r\n').length - 1
          if (mode === 'drop') {
            sock.destroy()
            return
          }
          if (mode === 'silent' || count < EXPECTED.length) return
          received = ''
          if (mode === 'one-chunk') {
            sock.write(REPLIES)
            return
          }
          for (const ch of REPLIES) {
            sock.write(ch)
            await sleep(1)
          }
        })
        sock.on('error', () => {})
      })
      await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r))
      fakePort = (fake.address() as { port: number }).port
    })
    afterAll(() => new Promise<void>((r) => fake.close(() => r())))

    const sendAll = (c: RespClient): Promise<RespValue[]> => Promise.all(EXPECTED.map((_, i) => c.send([`CMD${i}`])))

    it('parses replies delivered one byte per TCP segment', async () => {
      mode = 'byte-by-byte'
      const c = createRespClient({ port: fakePort })
      try {
        expect(await sendAll(c)).toEqual(EXPECTED)
      } finally {
        await c.close()
      }
    })

    it('parses many replies arriving in one chunk', async () => {
      mode = 'one-chunk'
      const c = createRespClient({ port: fakePort })
      try {
        expect(await sendAll(c)).toEqual(EXPECTED)
      } finally {
        await c.close()
      }
    })

    it('rejects in-flight commands when the socket drops, then reconnects on the next command', async () => {
      mode = 'drop'
      const c = createRespClient({ port: fakePort })
      try {
        const before = connections
        const results = await Promise.allSettled([c.send(['CMD0']), c.send(['CMD1'])])
        for (const r of results) {
          expect(r.status).toBe('rejected')
          expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RespConnectionError)
        }
        mode = 'one-chunk'
        expect(await sendAll(c)).toEqual(EXPECTED)
        expect(connections).toBe(before + 2)
      } finally {
        await c.close()
      }
    })

    it('bounds a command that never gets an answer (commandTimeoutMs)', async () => {
      mode = 'silent'
      const c = createRespClient({ port: fakePort, commandTimeoutMs: 200 })
      try {
        const t0 = Date.now()
        const err = await c.send(['CMD0']).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(RespConnectionError)
        expect((err as RespConnectionError).code).toBe('ETIMEDOUT')
        expect(Date.now() - t0).toBeLessThan(2000)
      } finally {
        await c.close()
      }
    })

    it('rejects quickly with ECONNREFUSED when nothing listens', async () => {
      const closed = createServer()
      await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
      const deadPort = (closed.address() as { port: number }).port
      await new Promise<void>((r) => closed.close(() => r()))
      const c = createRespClient({ port: deadPort })
      const err = await c.send(['PING']).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(RespConnectionError)
      expect((err as RespConnectionError).code).toBe('ECONNREFUSED')
      await c.close()
    })
  })
})

// ---------------------------------------------------------------------------
describe('Upstash REST stand-in: wire format', () => {
  it('base64-encodes strings (not "OK") with Upstash-Encoding, plain text without', async () => {
    const k = `wire:${uid()}`
    const enc = { 'upstash-encoding': 'base64' }
    expect(await raw('/', ['SET', k, 'välue'], { headers: enc })).toEqual({ status: 200, json: { result: 'OK' } })
    expect(await raw('/', ['GET', k], { headers: enc })).toEqual({ status: 200, json: { result: b64('välue') } })
    expect(await raw('/', ['GET', k])).toEqual({ status: 200, json: { result: 'välue' } })
    expect(await raw('/', ['PING'], { headers: enc })).toEqual({ status: 200, json: { result: b64('PONG') } })
    expect(await raw('/', ['TYPE', k], { headers: enc })).toEqual({ status: 200, json: { result: b64('string') } })
    expect(await raw('/', ['INCR', `${k}:n`], { headers: enc })).toEqual({ status: 200, json: { result: 1 } })
    expect(await raw('/', ['GET', `${k}:missing`], { headers: enc })).toEqual({ status: 200, json: { result: null } })
    expect(await raw('/', ['MGET', k, `${k}:n`, `${k}:x`], { headers: enc })).toEqual({
      status: 200,
      json: { result: [b64('välue'), b64('1'), null] },
    })
    // Nested simple strings are encoded too (the client decodes array elements unconditionally).
    expect(await raw('/', ['EVAL', 'return {redis.status_reply("OK"), redis.status_reply("FINE")}', '0'], { headers: enc })).toEqual({
      status: 200,
      json: { result: [b64('OK'), b64('FINE')] },
    })
    expect(await raw('/', ['INCR', k], { headers: enc })).toEqual({
      status: 400,
      json: { error: 'ERR value is not an integer or out of range' },
    })
  })

  it('answers /pipeline per command and /multi-exec like a transaction', async () => {
    const k = `wire:p:${uid()}`
    expect(
      await raw('/pipeline', [
        ['SET', k, 'a'],
        ['INCR', k],
        ['GET', k],
      ]),
    ).toEqual({
      status: 200,
      json: [{ result: 'OK' }, { error: 'ERR value is not an integer or out of range' }, { result: 'a' }],
    })
    expect(
      await raw('/multi-exec', [
        ['SET', `${k}:m`, '5'],
        ['INCR', `${k}:m`],
        ['LPUSH', `${k}:m`, 'x'],
      ]),
    ).toEqual({
      status: 200,
      json: [{ result: 'OK' }, { result: 6 }, { error: expect.stringMatching(/^WRONGTYPE/) }],
    })
    // A command rejected while queueing discards the whole transaction.
    const aborted = await raw('/multi-exec', [
      ['SET', `${k}:abort`, '1'],
      ['SET', `${k}:abort`],
    ])
    expect(aborted.status).toBe(400)
    expect((aborted.json as { error: string }).error).toMatch(/^EXECABORT/)
    expect(await raw('/', ['EXISTS', `${k}:abort`])).toEqual({ status: 200, json: { result: 0 } })
  })

  it('supports the path form with a body argument and query arguments', async () => {
    const k = `wire:path:${uid()}`
    expect(await raw(`/set/${encodeURIComponent(k)}/a%2Fb`, undefined, { method: 'GET' })).toEqual({ status: 200, json: { result: 'OK' } })
    expect(await raw(`/get/${encodeURIComponent(k)}`, undefined, { method: 'GET' })).toEqual({ status: 200, json: { result: 'a/b' } })
    expect(await raw(`/set/${encodeURIComponent(k)}?EX=100`, undefined, { rawBody: '{"json": true}' })).toEqual({
      status: 200,
      json: { result: 'OK' },
    })
    expect(await raw(`/get/${encodeURIComponent(k)}`, undefined, { method: 'GET' })).toEqual({
      status: 200,
      json: { result: '{"json": true}' },
    })
    const ttl = await raw(`/ttl/${encodeURIComponent(k)}`, undefined, { method: 'GET' })
    expect(ttl.json).toEqual({ result: expect.any(Number) })
    expect((ttl.json as { result: number }).result).toBeGreaterThan(90)
  })

  it('rejects a missing or wrong token with 401 and accepts ?_token=', async () => {
    for (const headers of [{ authorization: 'Bearer wrong' }, { authorization: '' }]) {
      const res = await fetch(rest.url, { method: 'POST', headers, body: '["PING"]' })
      expect(res.status).toBe(401)
      expect(await res.json()).toEqual({ error: 'Unauthorized' })
    }
    const noHeader = await fetch(rest.url, { method: 'POST', body: '["PING"]' })
    expect(noHeader.status).toBe(401)
    const viaQuery = await fetch(`${rest.url}/ping?_token=${TOKEN}`)
    expect(viaQuery.status).toBe(200)
    expect(await viaQuery.json()).toEqual({ result: 'PONG' })
  })

  it('refuses connection-state commands and runs blocking ones without stalling others', async () => {
    const multi = await raw('/', ['MULTI'])
    expect(multi.status).toBe(400)
    expect((multi.json as { error: string }).error).toMatch(/not allowed/)
    expect((await raw('/', ['SELECT', '3'])).status).toBe(400)
    // Still healthy afterwards (the shared connection was not put into MULTI).
    expect(await raw('/', ['ECHO', 'x'])).toEqual({ status: 200, json: { result: 'x' } })

    const k = `wire:block:${uid()}`
    const t0 = Date.now()
    const blpop = raw('/', ['BLPOP', k, '5'])
    await sleep(100)
    expect(await raw('/', ['ECHO', 'not-stalled'])).toEqual({ status: 200, json: { result: 'not-stalled' } })
    expect(Date.now() - t0).toBeLessThan(2000)
    await raw('/', ['RPUSH', k, 'item'])
    expect(await blpop).toEqual({ status: 200, json: { result: [k, 'item'] } })
    expect(Date.now() - t0).toBeLessThan(4000)
  })
})

// ---------------------------------------------------------------------------
describe('Upstash REST stand-in through the real @upstash/redis client', () => {
  let redis: Redis
  let single: Redis // one HTTP request per command (no auto-pipelining)
  beforeAll(() => {
    redis = new Redis({ url: rest.url, token: TOKEN, enableTelemetry: false })
    single = new Redis({ url: rest.url, token: TOKEN, enableTelemetry: false, enableAutoPipelining: false })
  })

  it('get/set JSON values, plain strings, numbers and unicode', async () => {
    const p = `c:${uid()}`
    for (const client of [redis, single]) {
      expect(await client.set(`${p}:obj`, { a: 1, b: ['x', null], c: { d: true } })).toBe('OK')
      expect(await client.get(`${p}:obj`)).toEqual({ a: 1, b: ['x', null], c: { d: true } })
      await client.set(`${p}:str`, 'hello world')
      expect(await client.get(`${p}:str`)).toBe('hello world')
      await client.set(`${p}:uni`, 'héllo ✓ 日本 🚀')
      expect(await client.get(`${p}:uni`)).toBe('héllo ✓ 日本 🚀')
      await client.set(`${p}:num`, 42)
      expect(await client.get(`${p}:num`)).toBe(42)
      await client.set(`${p}:lead0`, '007') // not valid JSON -> stays a string
      expect(await client.get(`${p}:lead0`)).toBe('007')
      expect(await client.get(`${p}:missing`)).toBeNull()
      expect(await client.ping()).toBe('PONG')
      expect(await client.type(`${p}:str`)).toBe('string')
    }
  })

  it('hashes, sets, lists, del, incr, expire/ttl, mget', async () => {
    const p = `c:${uid()}`
    expect(await redis.hset(`${p}:h`, { name: 'ann', age: 31 })).toBe(2)
    expect(await redis.hget(`${p}:h`, 'name')).toBe('ann')
    expect(await redis.hgetall(`${p}:h`)).toEqual({ name: 'ann', age: 31 })
    expect(await redis.sadd(`${p}:s`, 'b', 'a', 'c')).toBe(3)
    expect(((await redis.smembers(`${p}:s`)) as string[]).sort()).toEqual(['a', 'b', 'c'])
    expect(await redis.sismember(`${p}:s`, 'a')).toBe(1)
    expect(await redis.rpush(`${p}:l`, 'one', 'two')).toBe(2)
    expect(await redis.lpush(`${p}:l`, 'zero')).toBe(3)
    expect(await redis.lrange(`${p}:l`, 0, -1)).toEqual(['zero', 'one', 'two'])
    expect(await redis.incr(`${p}:n`)).toBe(1)
    expect(await redis.incrby(`${p}:n`, 10)).toBe(11)
    expect(await redis.expire(`${p}:n`, 100)).toBe(1)
    const ttl = await redis.ttl(`${p}:n`)
    expect(ttl).toBeGreaterThan(95)
    expect(ttl).toBeLessThanOrEqual(100)
    expect(await redis.ttl(`${p}:h`)).toBe(-1)
    expect(await redis.mget(`${p}:n`, `${p}:missing`, `${p}:h2`)).toEqual([11, null, null])
    expect(await redis.del(`${p}:h`, `${p}:s`, `${p}:nope`)).toBe(2)
    expect(await redis.exists(`${p}:h`)).toBe(0)
  })

  it('pipeline() and multi()', async () => {
    const p = `c:${uid()}`
    const res = await redis.pipeline().set(`${p}:a`, { v: 1 }).get(`${p}:a`).incr(`${p}:n`).incr(`${p}:n`).exec()
    expect(res).toEqual(['OK', { v: 1 }, 1, 2])
    await expect(redis.pipeline().set(`${p}:s`, 'x').incr(`${p}:s`).exec()).rejects.toThrow(
      'Command 2 [ incr ] failed: ERR value is not an integer or out of range',
    )
    const kept = await redis.pipeline().get(`${p}:s`).incr(`${p}:s`).exec({ keepErrors: true })
    expect(kept[0]).toEqual({ error: undefined, result: 'x' })
    expect(kept[1]?.error).toBe('ERR value is not an integer or out of range')

    rest.resetStats()
    const tx = await redis.multi().set(`${p}:m`, 'v').incr(`${p}:mc`).get(`${p}:m`).exec()
    expect(tx).toEqual(['OK', 1, 'v'])
    expect(rest.stats().requests).toBe(1)
  })

  it('eval, evalsha, scriptLoad/scriptExists and Upstash shebang flags', async () => {
    const p = `c:${uid()}`
    expect(await redis.eval('return {KEYS[1], ARGV[1], 7}', [`${p}:k`], ['arg'])).toEqual([`${p}:k`, 'arg', 7])
    expect(await redis.eval('return {redis.call("SET", KEYS[1], "v"), redis.call("GET", KEYS[1])}', [`${p}:ok`], [])).toEqual(['OK', 'v'])
    const plain = 'return redis.call("INCRBY", KEYS[1], ARGV[1])'
    const sha = await redis.scriptLoad(plain)
    expect(sha).toBe(sha1(plain))
    expect(await redis.evalsha(sha, [`${p}:c`], [5])).toBe(5)
    await expect(single.evalsha('0'.repeat(40), [], [])).rejects.toThrow(/NOSCRIPT No matching script/)
    await expect(redis.evalsha('0'.repeat(40), [], [])).rejects.toThrow(/Command failed: NOSCRIPT/)

    // Upstash-only shebang flag, as used by @upstash/ratelimit.
    const locked = `#!lua flags=allow-key-locking\nreturn redis.call("INCR", KEYS[1]) -- ${p}`
    const lockedSha = sha1(locked)
    await expect(redis.evalsha(lockedSha, [`${p}:l`], [])).rejects.toThrow(/NOSCRIPT/)
    expect(await redis.eval(locked, [`${p}:l`], [])).toBe(1)
    expect(await redis.evalsha(lockedSha, [`${p}:l`], [])).toBe(2)
    expect(await redis.scriptExists(lockedSha, '0'.repeat(40))).toEqual([1, 0])
    const loaded = `#!lua flags=no-writes,allow-key-locking\nreturn ARGV[1] .. "-${p}"`
    expect(await redis.scriptLoad(loaded)).toBe(sha1(loaded))
    expect(await redis.evalsha(sha1(loaded), [], ['hi'])).toBe(`hi-${p}`)
    // The known flag survived the rewrite: the script is read-only.
    expect(await redis.evalshaRo(sha1(loaded), [], ['ro'])).toBe(`ro-${p}`)
    // createScript().exec falls back from EVALSHA to EVAL on NOSCRIPT.
    const script = redis.createScript<number>(`#!lua flags=allow-key-locking\nreturn ${Number.parseInt(p.slice(-4), 16)}`)
    expect(await script.exec([], [])).toBe(Number.parseInt(p.slice(-4), 16))
  })

  it('rejects a wrong token', async () => {
    const bad = new Redis({ url: rest.url, token: 'wrong', enableTelemetry: false })
    await expect(bad.get('x')).rejects.toThrow(/^Unauthorized, command was: \[\["get","x"\]\]$/)
    const badSingle = new Redis({ url: rest.url, token: 'wrong', enableTelemetry: false, enableAutoPipelining: false })
    await expect(badSingle.set('x', 1)).rejects.toThrow('Unauthorized, command was: ["set","x",1]')
  })

  it('surfaces Redis errors as thrown UpstashErrors', async () => {
    const k = `c:${uid()}`
    await redis.set(k, 'text')
    const e1 = await redis.lpush(k, 'x').catch((e: unknown) => e)
    expect((e1 as Error).name).toBe('UpstashError')
    expect((e1 as Error).message).toMatch(/^Command failed: WRONGTYPE Operation against a key holding the wrong kind of value$/)
    const e2 = await single.incr(k).catch((e: unknown) => e)
    expect((e2 as Error).name).toBe('UpstashError')
    expect((e2 as Error).message).toBe(`ERR value is not an integer or out of range, command was: ["incr","${k}"]`)
  })

  it('round-trips a 1 MB value through HTTP + base64', async () => {
    const k = `c:big:${uid()}`
    const big = randomBytes(768 * 1024).toString('base64') // 1 MiB of text
    expect(big.length).toBe(1024 * 1024)
    await single.set(k, big)
    expect(await single.get(k)).toBe(big)
    expect(await single.strlen(k)).toBe(1024 * 1024)
  })

  it('isolates stand-ins with different db indexes on one redis-server', async () => {
    const a = await startUpstashRest({ redisPort: redisServer.port, token: TOKEN, db: 1 })
    const b = await startUpstashRest({ redisPort: redisServer.port, token: TOKEN, db: 2 })
    try {
      const ra = new Redis({ url: a.url, token: TOKEN, enableTelemetry: false })
      const rb = new Redis({ url: b.url, token: TOKEN, enableTelemetry: false })
      await ra.set('shared-key', 'from-a')
      await rb.set('shared-key', 'from-b')
      expect(await ra.get('shared-key')).toBe('from-a')
      expect(await rb.get('shared-key')).toBe('from-b')
      expect(await redis.get('shared-key')).toBeNull() // db 0
      await ra.flushdb()
      expect(await ra.get('shared-key')).toBeNull()
      expect(await rb.get('shared-key')).toBe('from-b')
    } finally {
      await a.close()
      await b.close()
    }
  })
})

// ---------------------------------------------------------------------------
describe('@upstash/ratelimit through the stand-in', () => {
  let redis: Redis
  beforeAll(() => {
    redis = new Redis({ url: rest.url, token: TOKEN, enableTelemetry: false })
  })

  /** Stay clear of a 10 s window boundary (the sliding window weighs the previous window). */
  const awayFromBoundary = async (): Promise<void> => {
    const into = Date.now() % 10_000
    if (into > 7000) await sleep(10_000 - into + 50)
  }

  for (const cache of [false, true]) {
    it(`slidingWindow(3, "10 s") denies the 4th call (ephemeralCache ${cache ? 'on' : 'off'})`, async () => {
      const rl = new Ratelimit({
        redis,
        limiter: Ratelimit.slidingWindow(3, '10 s'),
        prefix: `rl:${uid()}`,
        ephemeralCache: cache ? new Map() : false,
        timeout: 0,
      })
      await awayFromBoundary()
      const results = []
      for (let i = 0; i < 4; i++) results.push(await rl.limit('user-1'))
      expect(results.map((r) => r.success)).toEqual([true, true, true, false])
      expect(results.map((r) => r.remaining)).toEqual([2, 1, 0, 0])
      const now = Date.now()
      for (const r of results) {
        expect(r.limit).toBe(3)
        expect(r.reset).toBeGreaterThan(now)
        expect(r.reset).toBeLessThanOrEqual(now + 10_000)
        expect(r.reset % 10_000).toBe(0)
        expect(r.reason).toBeUndefined()
      }
      // Another identifier is independent.
      const other = await rl.limit('user-2')
      expect(other.success).toBe(true)
      expect(other.remaining).toBe(2)
      // A 5th call for user-1: blocked from the in-memory cache (no request) or by redis.
      rest.resetStats()
      const fifth = await rl.limit('user-1')
      expect(fifth.success).toBe(false)
      if (cache) {
        expect(fifth.reason).toBe('cacheBlock')
        expect(rest.stats().requests).toBe(0)
      } else {
        expect(fifth.reason).toBeUndefined()
        expect(rest.stats().requests).toBeGreaterThan(0)
      }
      expect((await rl.getRemaining('user-1')).remaining).toBe(0)
      expect((await rl.getRemaining('user-2')).remaining).toBe(2)
    }, 15_000)
  }

  it('falls back from EVALSHA (NOSCRIPT) to EVAL once, then uses the cached script', async () => {
    const statsOf = async (): Promise<Record<string, Record<string, number>>> => {
      const info = ((await resp.send(['INFO', 'commandstats'])) as Buffer).toString()
      const out: Record<string, Record<string, number>> = {}
      for (const m of info.matchAll(/^cmdstat_(\w+):(.*)$/gm)) {
        out[m[1] as string] = Object.fromEntries(
          (m[2] as string).split(',').map((kv) => {
            const [key, v] = kv.split('=')
            return [key as string, Number(v)]
          }),
        )
      }
      return out
    }
    await resp.send(['SCRIPT', 'FLUSH'])
    await resp.send(['CONFIG', 'RESETSTAT'])
    const rl = new Ratelimit({ redis, limiter: Ratelimit.slidingWindow(3, '10 s'), prefix: `rl:${uid()}`, ephemeralCache: false })
    await awayFromBoundary()
    expect((await rl.limit('a')).success).toBe(true)
    let s = await statsOf()
    expect(s.evalsha?.calls).toBe(1)
    expect(s.evalsha?.failed_calls).toBe(1) // NOSCRIPT
    expect(s.eval?.calls).toBe(1)
    expect((await rl.limit('a')).remaining).toBe(1)
    s = await statsOf()
    expect(s.evalsha?.calls).toBe(2)
    expect(s.evalsha?.failed_calls).toBe(1)
    expect(s.eval?.calls).toBe(1)
  }, 15_000)
})

// ---------------------------------------------------------------------------
describe('Redis outages', () => {
  let outageRedis: RedisServerHandle
  let standIn: UpstashRestHandle
  beforeAll(async () => {
    outageRedis = await startRedisServer()
    standIn = await startUpstashRest({ redisPort: outageRedis.port, token: TOKEN, commandTimeoutMs: 300 })
  }, 20_000)
  afterAll(async () => {
    await standIn?.close()
    await outageRedis?.stop()
  }, 20_000)

  it('answers 503 quickly while redis is down and recovers after a restart on the same port', async () => {
    const redis = new Redis({ url: standIn.url, token: TOKEN, enableTelemetry: false })
    const rl = new Ratelimit({ redis, limiter: Ratelimit.slidingWindow(3, '10 s'), prefix: `rl:${uid()}`, ephemeralCache: false })
    await redis.set('k', 'before')
    expect((await rl.limit('x')).success).toBe(true)
    const port = outageRedis.port

    await outageRedis.stop()
    expect(outageRedis.running).toBe(false)
    const t0 = Date.now()
    const err = await redis.get('k').catch((e: unknown) => e)
    expect((err as Error).name).toBe('UpstashError')
    expect((err as Error).message).toMatch(/upstream redis unavailable/)
    expect(Date.now() - t0).toBeLessThan(1500)
    const raw503 = await fetch(standIn.url, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '["PING"]' })
    expect(raw503.status).toBe(503)
    await raw503.text()
    // @upstash/ratelimit does not fail open on errors: limit() rejects.
    await expect(rl.limit('x')).rejects.toThrow(/upstream redis unavailable/)

    await outageRedis.start()
    expect(outageRedis.port).toBe(port)
    expect(await redis.get('k')).toBeNull() // fresh, empty server
    await redis.set('k', 'after')
    expect(await redis.get('k')).toBe('after')
    // Script cache is empty after the restart: EVALSHA -> NOSCRIPT -> EVAL again.
    const r = await rl.limit('x')
    expect(r.success).toBe(true)
    expect(r.remaining).toBe(2)
  }, 20_000)

  it('bounds requests while redis hangs (SIGSTOP) and recovers on resume', async () => {
    const redis = new Redis({ url: standIn.url, token: TOKEN, enableTelemetry: false, enableAutoPipelining: false })
    await redis.set('h', 1)
    outageRedis.pause()
    try {
      const t0 = Date.now()
      const err = await redis.get('h').catch((e: unknown) => e)
      const elapsed = Date.now() - t0
      expect((err as Error).message).toMatch(/upstream redis unavailable: redis command timed out/)
      expect(elapsed).toBeGreaterThanOrEqual(250)
      expect(elapsed).toBeLessThan(2000)
    } finally {
      outageRedis.resume()
    }
    expect(await redis.get('h')).toBe(1)
  }, 20_000)

  it("with upstreamFailure: 'reset' the client sees a network error (and retries)", async () => {
    const resetting = await startUpstashRest({ redisPort: outageRedis.port, token: TOKEN, upstreamFailure: 'reset' })
    try {
      const redis = new Redis({
        url: resetting.url,
        token: TOKEN,
        enableTelemetry: false,
        enableAutoPipelining: false,
        retry: { retries: 2, backoff: () => 10 },
      })
      expect(await redis.ping()).toBe('PONG')
      await outageRedis.stop()
      resetting.resetStats()
      const err = await redis.get('k').catch((e: unknown) => e)
      expect(err).toBeInstanceOf(TypeError)
      expect((err as Error).message).toBe('fetch failed')
      expect(resetting.stats().requests).toBe(3) // first attempt + 2 retries
      expect(resetting.stats().upstreamFailures).toBe(3)
    } finally {
      await resetting.close()
      await outageRedis.start()
    }
  }, 20_000)
})
