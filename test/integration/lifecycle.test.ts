import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { expectProblem } from '../contract/helpers.ts'
import { ROOT, startAppServer } from '../support/app-server.ts'
import { migratedDatabase } from '../support/databases.ts'
import { freePort } from '../support/free-port.ts'
import { freshClone, pathWithoutTools } from '../support/fresh-clone.ts'
import { listeningPids } from '../support/listener.ts'
import { type PostgresServer, startPostgres } from '../support/postgres.ts'
import { runCommand } from '../support/run-command.ts'
import { createMigratedDatabase } from '../support/services.ts'
import { runShell } from '../support/shell-command.ts'

/*
 * The service as a process: how it starts, what it says, how it stops, and
 * what it does when its database goes away — on Bun, Node and workerd.
 */

const SECRET = 'lifecycle-secret-0123456789abcdef0123'
const bun = process.env.BUN_BIN ?? 'bun'

function logLines(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l))
}

describe('embedded mode, as the README starts it', () => {
  let dataDir: string
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'edgeshop-life-'))
  })
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

  it('says first that it runs embedded and where its data lives, then stops cleanly on SIGTERM', async () => {
    const server = await startAppServer('bun', { DATA_DIR: dataDir })
    const ready = await fetch(`${server.url}/readyz`)
    expect(await ready.json()).toMatchObject({ status: 'ready', checks: { db: 'ok', cache: 'disabled', queue: 'embedded' } })
    expect(existsSync(join(dataDir, 'edgeshop.lock'))).toBe(true)

    const code = await server.stop()
    expect(code).toBe(0)
    const lines = logLines(server.output())
    expect(lines[0]!.msg).toMatch(/running embedded/)
    expect(lines[0]!.dataDir).toBe(dataDir)
    expect(lines.at(-1)!.msg).toBe('stopped cleanly')
    expect(existsSync(join(dataDir, 'edgeshop.lock'))).toBe(false)
    expect(existsSync(join(dataDir, 'pglite', 'PG_VERSION'))).toBe(true)
  })

  it('starts again on the same data, on Node as well, and refuses a second process on one DATA_DIR', async () => {
    const first = await startAppServer('node', { DATA_DIR: dataDir })
    try {
      expect((await fetch(`${first.url}/readyz`)).status).toBe(200)
      const second = await runCommand(process.execPath, ['src/runtime/node.ts'], { DATA_DIR: dataDir, PORT: String(await freePort()) })
      expect(second.code).toBe(1)
      expect(second.out).toMatch(/another edgeshop process \(pid \d+\) is using/)
    } finally {
      expect(await first.stop()).toBe(0)
    }
  })

  it('refuses a second instance on a port in use, on Bun and Node, naming it before opening any database', async () => {
    const first = await startAppServer('bun', { DATA_DIR: dataDir })
    try {
      for (const [cmd, file] of [
        [bun, 'src/runtime/bun.ts'],
        [process.execPath, 'src/runtime/node.ts'],
      ] as const) {
        // Another DATA_DIR is the harmful case (two databases behind one port); the same one must name the port too.
        const other = join(tmpdir(), `edgeshop-other-${process.pid}-${Date.now()}`)
        for (const dir of [other, dataDir]) {
          const second = await runCommand(cmd, [file], { DATA_DIR: dir, PORT: String(first.port), HOST: '127.0.0.1' })
          expect(second.code, second.out).toBe(1)
          expect(second.out).toContain(`127.0.0.1:${first.port} is already in use by another process`)
          expect(second.out).not.toMatch(/database ready|listening on/)
        }
        expect(existsSync(other)).toBe(false)
      }
      expect(listeningPids(first.port)).toEqual([first.pid])
      expect((await fetch(`${first.url}/readyz`)).status).toBe(200)
    } finally {
      expect(await first.stop()).toBe(0)
    }
  }, 120_000)

  it('takes over the lock of a process that died', async () => {
    const crashed = await startAppServer('bun', { DATA_DIR: dataDir })
    await crashed.kill()
    expect(existsSync(join(dataDir, 'edgeshop.lock'))).toBe(true)
    const next = await startAppServer('bun', { DATA_DIR: dataDir })
    expect((await fetch(`${next.url}/readyz`)).status).toBe(200)
    expect(await next.stop()).toBe(0)
  })
})

describe('port sharing, asked for explicitly', () => {
  it('lets Bun and Node instances on one PostgreSQL database listen on one port', async () => {
    const env = { DATABASE_URL: await migratedDatabase('port_sharing'), PORT_SHARING: 'true', SHUTDOWN_DRAIN_MS: '100' }
    const first = await startAppServer('bun', env)
    // Not through startAppServer: on a shared port its readiness check would be answered by the first.
    const more = [
      [bun, 'src/runtime/bun.ts'],
      [process.execPath, 'src/runtime/node.ts'],
    ].map(([cmd, file]) => {
      const child = spawn(cmd!, [file!], {
        cwd: ROOT,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env, PORT: String(first.port), HOST: '127.0.0.1' },
      })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (out += d))
      return { child, out: () => out, exited: once(child, 'exit').then(([code]) => code as number | null) }
    })
    try {
      for (const { child, out } of more) {
        await expect.poll(() => out(), { timeout: 60_000 }).toContain('listening on')
        expect(listeningPids(first.port)).toContain(child.pid)
      }
      const byNumber = (a: number, b: number) => a - b
      expect(listeningPids(first.port)?.sort(byNumber)).toEqual([first.pid, ...more.map(({ child }) => child.pid!)].sort(byNumber))
      expect((await fetch(`${first.url}/readyz`)).status).toBe(200)
    } finally {
      for (const { child, exited } of more) {
        child.kill('SIGTERM')
        expect(await exited).toBe(0)
      }
      expect(await first.stop()).toBe(0)
    }
  }, 120_000)
})

describe('bad configuration', () => {
  it('stops Bun and Node at start, naming every bad setting', async () => {
    for (const [cmd, file] of [
      [bun, 'src/runtime/bun.ts'],
      [process.execPath, 'src/runtime/node.ts'],
    ] as const) {
      const res = await runCommand(cmd, [file], { PORT: 'eighty', RATE_LIMIT_AUTH: 'lots' })
      expect(res.code).toBe(1)
      expect(res.out).toMatch(/PORT: must be a whole number/)
      expect(res.out).toMatch(/RATE_LIMIT_AUTH/)
    }
  })

  it('refuses dev defaults in production', async () => {
    const res = await runCommand(bun, ['src/runtime/bun.ts'], { NODE_ENV: 'production' })
    expect(res.code).toBe(1)
    expect(res.out).toMatch(/JWT_SECRET: required in production/)
    expect(res.out).toMatch(/DATABASE_URL: required in production/)
  })

  it('answers 500 bad_configuration on Workers, naming the setting', async () => {
    const server = await startAppServer('workerd', { DATABASE_URL: 'postgres://u:p@127.0.0.1:9/x' }, { anyAnswer: true })
    try {
      const res = await fetch(`${server.url}/healthz`)
      const problem = await expectProblemLoose(res, 500, 'bad_configuration')
      expect(problem.detail).toMatch(/JWT_SECRET \(required in production\)/)
      expect(JSON.stringify(problem)).not.toContain('u:p@')
    } finally {
      await server.stop()
    }
  })
})

/** A problem from outside the app (no X-Request-Id header): same shape, fewer guarantees. */
async function expectProblemLoose(res: Response, status: number, code: string) {
  expect(res.status).toBe(status)
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  const body = (await res.json()) as { code: string; detail?: string; requestId: string }
  expect(body.code).toBe(code)
  expect(body.requestId).toMatch(/^[0-9a-f-]{36}$/)
  return body
}

describe('PostgreSQL going away and coming back', () => {
  let pg: PostgresServer
  let url: string
  beforeAll(async () => {
    pg = await startPostgres()
    url = await createMigratedDatabase(pg, 'lifecycle')
  })
  afterAll(() => pg.stop())

  /** A GET, retried once when a kept-alive socket was closed under it (the client side of the keep-alive race). */
  async function get(url: string): Promise<Response> {
    try {
      return await fetch(url)
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code
      if (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET') throw err
      return fetch(url)
    }
  }

  for (const runtime of ['node', 'bun', 'workerd'] as const) {
    it(`${runtime}: /readyz and queries answer 503 within 2 s while it is down, and recover without a restart`, async () => {
      const server = await startAppServer(runtime, {
        NODE_ENV: 'production',
        PAYMENT_PROVIDER: 'simulated',
        MAILER: 'recording',
        DATABASE_URL: url,
        JWT_SECRET: SECRET,
        DATABASE_TIMEOUT_MS: '1000',
      })
      let paused = false
      try {
        expect((await get(`${server.url}/readyz`)).status).toBe(200)
        await pg.pause()
        paused = true
        const started = Date.now()
        const down = await get(`${server.url}/readyz`)
        expect(Date.now() - started).toBeLessThan(2000)
        expect(down.status).toBe(503)
        expect(down.headers.get('retry-after')).toBe('1')
        expect(await down.json()).toMatchObject({ status: 'unavailable', checks: { db: 'unavailable' } })
        const query = await get(`${server.url}/v1/products`)
        expect(query.status).toBe(503)
        expect(((await query.json()) as { code: string }).code).toBe('service_unavailable')
        expect((await get(`${server.url}/healthz`)).status).toBe(200)

        await pg.resume()
        paused = false
        await expect.poll(async () => (await get(`${server.url}/readyz`)).status, { timeout: 10_000, interval: 100 }).toBe(200)
        expect((await get(`${server.url}/v1/products`)).status).toBe(200)
      } catch (err) {
        console.error(`[${runtime}] server output:\n${server.output()}`)
        throw err
      } finally {
        if (paused) await pg.resume()
        await server.stop()
      }
      // The bounds that matter are asserted above; wrangler alone takes 10 s to start here, and more in the full suite.
    }, 60_000)
  }
})

describe('unknown routes with a database that is down', () => {
  it('still answer 404 problem details (no dependency touched)', async () => {
    const server = await startAppServer('node', {
      NODE_ENV: 'production',
      PAYMENT_PROVIDER: 'simulated',
      MAILER: 'recording',
      DATABASE_URL: 'postgres://u:p@127.0.0.1:9/x',
      JWT_SECRET: SECRET,
    })
    try {
      await expectProblem(await fetch(`${server.url}/v1/nothing`), 404, 'not_found')
    } finally {
      await server.stop()
    }
  })
})

/** The server's gauge of requests received and not yet answered (this request included). */
async function inFlight(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text()
  return Number(text.match(/^edgeshop_http_requests_in_flight (\d+)$/m)?.[1] ?? 0)
}

/** A login whose body stays half sent until `finish()`, which sends the rest and resolves with the whole answer. */
async function heldRequest(port: number): Promise<{ finish(): Promise<string> }> {
  const body = JSON.stringify({ email: 'held@example.test', password: 'not the password' })
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  let answer = ''
  socket.on('data', (d) => (answer += d))
  socket.on('error', () => {})
  const closed = once(socket, 'close')
  socket.write(
    `POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
  )
  return {
    async finish() {
      socket.write(body.slice(10))
      await closed
      return answer
    },
  }
}

describe('signals', () => {
  for (const script of ['start', 'start:node'] as const) {
    it(`./run ${script} is the server process itself, and one Ctrl-C to its process group is one graceful stop`, async () => {
      // A clone of its own: start:node rebuilds dist/runtime/node.mjs, which other test files run from this checkout.
      const clone = freshClone()
      const port = await freePort()
      const server = runShell(`./run ${script}`, {
        cwd: clone.dir,
        env: { PATH: pathWithoutTools(), HOME: process.env.HOME ?? '/tmp', PORT: String(port) },
      })
      try {
        await server.waitForOutput(/listening on/, 150_000)
        expect(listeningPids(port)).toEqual([server.pid])
        server.signal('SIGINT')
        expect(await server.exited).toBe(0)
        expect(server.output()).toContain('stopped cleanly')
        expect(server.output()).not.toContain('exiting now')
      } finally {
        await server.kill()
        clone.remove()
      }
    }, 180_000)
  }

  for (const runtime of ['bun', 'node'] as const) {
    it(`${runtime}: a signal relayed a moment after the first (as \`bun run\` relays a terminal's Ctrl-C) is the same graceful stop`, async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'edgeshop-relay-'))
      const server = await startAppServer(runtime, { DATA_DIR: dataDir })
      try {
        // A request the server holds until its body is complete keeps the stop going while the relayed signal arrives.
        const held = await heldRequest(server.port)
        await expect.poll(() => inFlight(server.url), { timeout: 10_000 }).toBeGreaterThanOrEqual(2)
        const stopped = server.stop()
        await expect.poll(() => server.output(), { timeout: 10_000, interval: 5 }).toContain('shutting down')
        process.kill(server.pid, 'SIGTERM')
        await expect.poll(() => server.output(), { timeout: 10_000, interval: 5 }).toMatch(/the same stop|again/)
        expect(await held.finish()).toMatch(/^HTTP\/1\.1 401 /)
        expect(await stopped).toBe(0)
        expect(server.output()).toContain('stopped cleanly')
        expect(server.output()).not.toContain('exiting now')
      } finally {
        await server.stop()
        rmSync(dataDir, { recursive: true, force: true })
      }
    }, 120_000)

    it(`${runtime}: while draining, /readyz answers 503 draining and every answer closes its connection; a later second signal exits at once`, async () => {
      // A shared port makes the server wait the whole drain window, long enough to look at it.
      const env = { DATABASE_URL: await migratedDatabase(`drain_${runtime}`), PORT_SHARING: 'true', SHUTDOWN_DRAIN_MS: '60000' }
      const server = await startAppServer(runtime, env)
      try {
        const stopped = server.stop()
        await expect.poll(async () => (await fetch(`${server.url}/readyz`)).status, { timeout: 10_000 }).toBe(503)
        const drainingSince = performance.now()
        const ready = await fetch(`${server.url}/readyz`)
        expect(await ready.json()).toMatchObject({ status: 'draining', checks: { db: 'ok' } })
        expect(ready.headers.get('connection')).toBe('close')
        const read = await fetch(`${server.url}/v1/products`)
        expect(read.status).toBe(200)
        expect(read.headers.get('connection')).toBe('close')
        // An operator's second Ctrl-C comes well after the first (here 1.5 s after the server took it): not the same press.
        await new Promise((r) => setTimeout(r, Math.max(0, 1500 - (performance.now() - drainingSince))))
        process.kill(server.pid, 'SIGINT')
        expect(await stopped).toBe(1)
        expect(server.output()).toContain('received SIGINT again: exiting now')
      } finally {
        await server.stop()
      }
    }, 120_000)
  }
})
