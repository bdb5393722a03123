import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ROOT, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { runCommand } from '../support/run-command.ts'

const bun = process.env.BUN_BIN ?? 'bun'

describe('bun run seed', () => {
  let url: string
  beforeAll(async () => {
    url = await migratedDatabase(`seed_${process.pid}_${Date.now()}`)
  })

  const withArgs = (args: string[]) => ({ SEED_ARGS: args.join(' ') })
  const seed = ({ SEED_ARGS, ...env }: Record<string, string>) =>
    spawnSync(bun, ['run', 'seed', ...(SEED_ARGS ? SEED_ARGS.split(' ') : [])], {
      cwd: ROOT,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    })

  it('creates the admin once and is idempotent, even in production without the service secrets', async () => {
    const env = { DATABASE_URL: url, ADMIN_EMAIL: 'seed-admin@example.test', ADMIN_PASSWORD: 'seed admin password', NODE_ENV: 'production' }
    const first = seed(env)
    expect(first.status, first.stderr).toBe(0)
    expect(first.stdout).toContain('admin seed-admin@example.test: created')
    const second = seed(env)
    expect(second.stdout).toContain('admin seed-admin@example.test: unchanged')
    const db = postgres(url, { max: 1 })
    const rows = await db`select role from users where email = 'seed-admin@example.test'`
    await db.end()
    expect(rows.map((r) => r.role)).toEqual(['admin'])
  })

  it('fills a demo catalog in batches, resumes where it stopped, and never duplicates', async () => {
    const count = async () => {
      const db = postgres(url, { max: 1 })
      const [row] = await db`select count(*)::int as n, count(distinct sku)::int as skus from products where sku like 'DEMO-%'`
      await db.end()
      return row!
    }
    expect(seed({ DATABASE_URL: url, ...withArgs(['--products', '7200']) }).status).toBe(0)
    expect(await count()).toEqual({ n: 7200, skus: 7200 })
    const more = seed({ DATABASE_URL: url, ...withArgs(['--products', '9000']) })
    expect(more.stderr).toMatch(/demo products 1,800\/1,800 \(100%/)
    expect(await count()).toEqual({ n: 9000, skus: 9000 })
    const again = seed({ DATABASE_URL: url, ...withArgs(['--products', '9000']) })
    expect(again.stdout).toContain('demo products: 9000 already there')
    expect(await count()).toEqual({ n: 9000, skus: 9000 })
  })
})

describe('bun run seed on a DATA_DIR a running server holds', () => {
  it('says in one line what to do, without a stack trace', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'edgeshop-seed-locked-'))
    const server = await startAppServer('bun', { DATA_DIR: dataDir })
    try {
      const res = await runCommand(bun, ['scripts/seed.ts'], { DATA_DIR: dataDir })
      expect(res.code).toBe(1)
      expect(res.out.trimEnd().split('\n')).toEqual([
        `seed: the embedded database in ${dataDir} is in use by a running edgeshop (pid ${server.pid}): stop it first, or seed PostgreSQL with DATABASE_URL, or choose another DATA_DIR`,
      ])
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200)
    } finally {
      expect(await server.stop()).toBe(0)
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 120_000)
})

/** One request of {@link sendContinuously}: when it was fully written, and what came back. */
interface Sent {
  fresh: boolean
  writtenAt?: number
  endedAt?: number
  status?: number
  error?: string
}

/**
 * Clients that send until told to stop, half over kept-alive connections and half each over a
 * new connection: product reads, and now and then a login (a wrong password: the full argon2id
 * cost), each from its own forwarded address so no rate limit answers.
 */
function sendContinuously(url: string, clients: number) {
  const { port } = new URL(url)
  const keepAlive = new Agent({ keepAlive: true, maxSockets: clients })
  const sent: Sent[] = []
  let running = true
  const one = (fresh: boolean) =>
    new Promise<void>((done) => {
      const i = sent.length
      const login = i % 16 === 0
      const rec: Sent = { fresh }
      sent.push(rec)
      const fail = (err: NodeJS.ErrnoException) => {
        rec.error ??= err.code ?? err.message
        rec.endedAt ??= performance.now()
        done()
      }
      const req = request(
        {
          host: '127.0.0.1',
          port,
          agent: fresh ? false : keepAlive,
          method: login ? 'POST' : 'GET',
          path: login ? '/v1/auth/login' : '/v1/products',
          headers: login
            ? { 'Content-Type': 'application/json', 'X-Forwarded-For': `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }
            : {},
        },
        (res) => {
          res.resume()
          res.once('error', fail)
          res.once('end', () => {
            rec.status = res.statusCode
            rec.endedAt = performance.now()
            done()
          })
        },
      )
      req.once('finish', () => (rec.writtenAt = performance.now()))
      req.once('error', fail)
      req.end(login ? JSON.stringify({ email: `drain-${i}@example.test`, password: 'not the password' }) : undefined)
    })
  const loops = Array.from({ length: clients }, async (_, c) => {
    while (running) await one(c % 2 === 1)
  })
  return {
    sent,
    async stop() {
      running = false
      await Promise.all(loops)
      keepAlive.destroy()
    },
  }
}

describe('graceful shutdown', () => {
  let dataDir: string
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'edgeshop-shutdown-'))
  })
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

  for (const runtime of ['bun', 'node'] as const) {
    it(`${runtime}: SIGTERM lets in-flight requests finish, and every acknowledged signup survives the restart`, async () => {
      const server = await startAppServer(runtime, { DATA_DIR: dataDir, TRUSTED_PROXIES: '1' })
      const emails = Array.from({ length: 12 }, (_, i) => `shutdown-${runtime}-${i}-${Date.now()}@example.test`)
      const inFlight = emails.map((email, i) =>
        fetch(`${server.url}/v1/auth/signup`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Forwarded-For': `192.0.2.${i + 1}` },
          body: JSON.stringify({ email, password: 'survive the restart', name: 'S' }),
        }).then((r) => r.status),
      )
      // SIGTERM once the server holds all of them (the gauge counts the /metrics request too).
      const held = async () => {
        const text = await (await fetch(`${server.url}/metrics`)).text()
        return Number(text.match(/^edgeshop_http_requests_in_flight (\d+)$/m)?.[1] ?? 0)
      }
      await expect.poll(held, { timeout: 10_000, interval: 5 }).toBeGreaterThanOrEqual(emails.length + 1)
      const stopping = server.stop()
      const statuses = await Promise.all(inFlight)
      expect(await stopping).toBe(0)
      expect(statuses.every((s) => s === 201)).toBe(true)
      expect(server.output()).toContain('stopped cleanly')

      const again = await startAppServer(runtime, { DATA_DIR: dataDir, TRUSTED_PROXIES: '1' })
      try {
        for (const [i, email] of emails.entries()) {
          const res = await fetch(`${again.url}/v1/auth/login`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', 'X-Forwarded-For': `198.18.0.${i + 1}` },
            body: JSON.stringify({ email, password: 'survive the restart' }),
          })
          expect(res.status, email).toBe(200)
        }
      } finally {
        await again.stop()
      }
    }, 120_000)

    it(`${runtime}: SIGTERM while clients are sending: every request written before the signal gets its whole answer`, async () => {
      const ownDir = mkdtempSync(join(tmpdir(), 'edgeshop-drain-'))
      const server = await startAppServer(runtime, { DATA_DIR: ownDir, TRUSTED_PROXIES: '1' })
      const load = sendContinuously(server.url, 48)
      try {
        await expect.poll(() => load.sent.filter((r) => r.status !== undefined).length, { timeout: 60_000 }).toBeGreaterThan(300)
        const signalAt = performance.now()
        expect(await server.stop()).toBe(0)
        await load.stop()
        const before = load.sent.filter((r) => r.writtenAt !== undefined && r.writtenAt < signalAt)
        const unanswered = before
          .filter((r) => r.status === undefined)
          .map((r) => `${r.fresh ? 'new' : 'kept-alive'} connection: ${r.error}`)
        expect(unanswered, `${unanswered.length} of ${before.length} unanswered`).toEqual([])
        expect(new Set(before.map((r) => r.status))).toEqual(new Set([200, 401]))
        // Requests of both kinds were on their way when the signal came.
        for (const fresh of [true, false]) expect(before.some((r) => r.fresh === fresh && r.endedAt! > signalAt)).toBe(true)
        expect(server.output()).toContain('stopped cleanly')
      } finally {
        await load.stop()
        await server.stop()
        rmSync(ownDir, { recursive: true, force: true })
      }
    }, 120_000)
  }
})
