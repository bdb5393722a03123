import { readFileSync } from 'node:fs'
import { createConnection } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ROOT } from '../support/app-server.ts'
import { freshClone, pathWithoutTools } from '../support/fresh-clone.ts'
import { runShell, type ShellCommand } from '../support/shell-command.ts'

/*
 * The README's way to run the Worker locally, run as written, in a fresh
 * clone on a machine whose PATH has no Bun and no Node 22: its commands (a
 * local PostgreSQL, then `wrangler dev`), each in its own process group, then
 * a few routes, then Ctrl-C and `./run db:local stop`. Their ports are the
 * README's (8787 and 15432): a developer's own `./run dev:worker` or
 * `./run db:local` running at the same time makes this test fail, and says so.
 */

const WORKER = 'http://127.0.0.1:8787'
const DB_PORT = 15432

/** The shell lines of the README's code block that runs `./run dev:worker`, without their comments. */
function readmeWorkerCommands(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const block = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => /\.\/run dev:worker/.test(b))
  if (!block) throw new Error('README has no sh block with ./run dev:worker')
  return block
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter(Boolean)
}

const portTaken = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })

describe('running the Worker locally as the README says', () => {
  const env = { PATH: pathWithoutTools(), HOME: process.env.HOME ?? '/tmp' }
  const started: ShellCommand[] = []
  let clone: ReturnType<typeof freshClone>

  beforeAll(async () => {
    for (const port of [8787, DB_PORT])
      if (await portTaken(port)) throw new Error(`port ${port} is in use: stop the local ./run dev:worker or ./run db:local first`)
    clone = freshClone()
  })
  afterAll(async () => {
    for (const command of started.reverse()) await command.kill()
    clone?.remove()
  })

  it('the README commands start PostgreSQL and workerd; the Worker answers; Ctrl-C and `db:local stop` end both', async () => {
    const commands = readmeWorkerCommands()
    expect(commands).toEqual(['./run db:local', './run dev:worker'])

    const db = runShell(commands[0]!, { cwd: clone.dir, env })
    started.push(db)
    await db.waitForOutput(/PostgreSQL is ready: postgres:\/\/\S+@127\.0\.0\.1:15432\/edgeshop/, 90_000)
    const worker = runShell(commands[1]!, { cwd: clone.dir, env })
    started.push(worker)
    await worker.waitForOutput(/Ready on http:\/\/127\.0\.0\.1:8787/, 120_000)
    expect(worker.output()).toContain('created .dev.vars from .dev.vars.example')
    expect(readFileSync(join(clone.dir, '.dev.vars'), 'utf8')).toBe(readFileSync(join(clone.dir, '.dev.vars.example'), 'utf8'))

    try {
      const ready = await fetch(`${WORKER}/readyz`)
      expect(await ready.json()).toEqual({ status: 'ready', checks: { db: 'ok', cache: 'disabled', queue: 'embedded' } })

      const post = (path: string, body: unknown, token?: string) =>
        fetch(`${WORKER}${path}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify(body),
        })
      const signup = await post('/v1/auth/signup', { email: 'newcomer@example.test', password: 'a newcomer password', name: 'New' })
      expect(signup.status).toBe(201)
      const login = await post('/v1/auth/login', { email: 'newcomer@example.test', password: 'a newcomer password' })
      expect(login.status).toBe(200)

      // The admin of .dev.vars.example exists once the Worker has answered its first request.
      const vars = Object.fromEntries(
        readFileSync(join(clone.dir, '.dev.vars'), 'utf8')
          .split('\n')
          .filter((l) => /^[A-Z_]+=/.test(l))
          .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      )
      const admin = await vi.waitFor(
        async () => {
          const res = await post('/v1/auth/login', { email: vars.ADMIN_EMAIL, password: vars.ADMIN_PASSWORD })
          expect(res.status).toBe(200)
          return ((await res.json()) as { accessToken: string }).accessToken
        },
        { timeout: 20_000, interval: 250 },
      )
      const created = await post('/v1/products', { sku: 'DEV-1', name: 'Local', priceCents: 100, stock: 3, category: 'dev' }, admin)
      expect(created.status).toBe(201)
      const list = (await (await fetch(`${WORKER}/v1/products?limit=5`)).json()) as { items: { sku: string }[] }
      expect(list.items.map((p) => p.sku)).toContain('DEV-1')
    } catch (err) {
      console.error(`${worker.output()}\n${db.output()}`)
      throw err
    }

    // Ctrl-C in the Worker's terminal: wrangler and workerd stop, nothing keeps the port.
    worker.signal('SIGINT')
    await worker.exited
    await vi.waitFor(async () => expect(await portTaken(8787)).toBe(false), { timeout: 15_000, interval: 200 })

    // `./run db:local stop` from another terminal: the server stops and the first terminal's command ends by itself.
    const stop = runShell('./run db:local stop', { cwd: clone.dir, env })
    started.push(stop)
    expect(await stop.exited).toBe(0)
    expect(stop.output()).toContain('PostgreSQL stopped')
    expect(await db.exited).toBe(0)
    expect(await portTaken(DB_PORT)).toBe(false)
  }, 300_000)
})
