import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { freePort } from './free-port.ts'
import { groupListensOn } from './listener.ts'

/*
 * Starts edgeshop as a user would — `bun src/runtime/bun.ts`,
 * `node src/runtime/node.ts`, or `wrangler dev` (workerd) — on a free
 * loopback port, waits until /healthz answers, and stops it again.
 */

export type Runtime = 'bun' | 'node' | 'workerd'

export const ROOT = resolve(import.meta.dirname, '../..')

export interface AppServer {
  runtime: Runtime
  url: string
  port: number
  pid: number
  /** The last lines the process printed. */
  output(): string
  /** Graceful stop (SIGTERM) bounded in time, then SIGKILL. Resolves with the exit code. */
  stop(): Promise<number | null>
  /** SIGKILL: a crash. */
  kill(): Promise<void>
}

/** Process groups still running; killed if the test process exits without stopping them (a failed test). */
const live = new Set<number>()
let exitHook = false
function watch(pid: number) {
  live.add(pid)
  if (exitHook) return
  exitHook = true
  process.once('exit', () => {
    for (const p of live) {
      try {
        process.kill(-p, 'SIGKILL')
      } catch {}
    }
  })
}

let bundled: string | undefined

/**
 * The Node bundle production runs (`./run build:node`), built once per
 * test process from the current sources; written under a private name and
 * renamed, so parallel test files never run a half-written bundle.
 */
export function nodeBundle(): string {
  if (bundled) return bundled
  const out = join(ROOT, 'dist/runtime/node.mjs')
  const tmp = join(ROOT, `dist/runtime/.${process.pid}`)
  const args = ['build', 'src/runtime/node.ts', '--target=node', '--format=esm', '--external', '@electric-sql/pglite', '--outdir', tmp]
  const res = spawnSync(process.env.BUN_BIN ?? 'bun', args, { cwd: ROOT, encoding: 'utf8' })
  if (res.status !== 0) throw new Error(`bun build of the Node bundle failed: ${res.stderr}`)
  renameSync(join(tmp, 'node.js'), out)
  rmSync(tmp, { recursive: true, force: true })
  bundled = out
  return out
}

function emptyFile(dir: string): string {
  const file = join(dir, 'none.env')
  writeFileSync(file, '')
  return file
}

function bin(name: string): string {
  const local = join(ROOT, 'node_modules/.bin', name)
  return existsSync(local) ? local : name
}

function command(
  runtime: Runtime,
  port: number,
  env: Record<string, string>,
  stateDir: string,
): [string, string[], Record<string, string>] {
  switch (runtime) {
    case 'bun':
      return [process.env.BUN_BIN ?? 'bun', ['src/runtime/bun.ts'], { ...env, PORT: String(port), HOST: '127.0.0.1' }]
    case 'node':
      return [process.execPath, ['--enable-source-maps', nodeBundle()], { ...env, PORT: String(port), HOST: '127.0.0.1' }]
    case 'workerd': {
      const { DATABASE_URL, ...vars } = env
      const args = [
        'dev',
        '--port',
        String(port),
        '--ip',
        '127.0.0.1',
        '--persist-to',
        stateDir,
        '--inspector-port',
        '0',
        '--log-level',
        // WRANGLER_LOG_LEVEL=log shows the worker's own log lines when debugging a test.
        process.env.WRANGLER_LOG_LEVEL ?? 'warn',
        // Settings come from the test alone: an env file of none keeps the checkout's .dev.vars (./run dev:worker's) out.
        '--env-file',
        emptyFile(stateDir),
      ]
      for (const [k, v] of Object.entries(vars)) args.push('--var', `${k}:${v}`)
      const procEnv: Record<string, string> = { WRANGLER_SEND_METRICS: 'false', WRANGLER_LOG_PATH: stateDir, CI: '1' }
      if (DATABASE_URL) procEnv.CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_HYPERDRIVE = DATABASE_URL
      return [bin('wrangler'), args, procEnv]
    }
  }
}

export interface StartOptions {
  timeoutMs?: number
  /** A fixed port; otherwise a free one, and another if it turns out taken. */
  port?: number
  /** Any HTTP answer counts as up (for a server expected to answer errors). */
  anyAnswer?: boolean
  /** Sees everything the process prints, as it arrives (`output()` keeps only the end). */
  onOutput?: (text: string) => void
}

/**
 * @example
 * ```ts
 * const server = await startAppServer('bun', { DATABASE_URL: url, JWT_SECRET: secret })
 * await fetch(`${server.url}/readyz`)
 * await server.stop()
 * ```
 */
export async function startAppServer(
  runtime: Runtime,
  /** Settings, or settings that depend on the port (for PUBLIC_URL). */
  settings: Record<string, string> | ((port: number) => Record<string, string>),
  opts: StartOptions = {},
): Promise<AppServer> {
  // A port picked free can be taken by another server starting at the same moment: then try another
  // (unless the caller fixed the port, e.g. because PUBLIC_URL names it).
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort())
    try {
      return await startOnce(runtime, typeof settings === 'function' ? settings(port) : settings, { ...opts, port })
    } catch (err) {
      if (!(err instanceof PortTaken) || opts.port !== undefined || attempt === 3) throw err
    }
  }
}

class PortTaken extends Error {}

async function startOnce(runtime: Runtime, env: Record<string, string>, opts: StartOptions = {}): Promise<AppServer> {
  const timeoutMs = opts.timeoutMs ?? 90_000
  const port = opts.port ?? (await freePort())
  const stateDir = mkdtempSync(join(tmpdir(), `edgeshop-${runtime}-`))
  const [cmd, args, extraEnv] = command(runtime, port, env, stateDir)
  const base: Record<string, string | undefined> = { ...process.env }
  // The servers read only what the test gives them.
  for (const key of Object.keys(base))
    if (/^(DATABASE_URL|UPSTASH_|QSTASH_|JWT_|ADMIN_|DATA_DIR|NODE_ENV|PORT|HOST|CORS_|METRICS_|OTEL_)/.test(key)) delete base[key]
  const child: ChildProcess = spawn(cmd, args, {
    cwd: ROOT,
    env: { ...base, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  let out = ''
  const keep = (d: Buffer) => {
    const text = d.toString()
    out = (out + text).slice(-20_000)
    opts.onOutput?.(text)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  watch(child.pid!)
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      live.delete(child.pid!)
      r(code)
    }),
  )
  const url = `http://127.0.0.1:${port}`

  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal)
    } catch {
      child.kill(signal)
    }
  }
  const cleanup = () => rmSync(stateDir, { recursive: true, force: true })

  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) {
      cleanup()
      if (/EADDRINUSE|already in use/i.test(out)) throw new PortTaken(`port ${port} is in use`)
      throw new Error(`${runtime} server exited with ${child.exitCode} before it was ready:\n${out}`)
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2000) })
      if (res.status === 200 || opts.anyAnswer) {
        // Make sure the answer came from the process we started, not from another server on a reused port.
        if (groupListensOn(child.pid!, port) !== false) break
        killGroup('SIGKILL')
        cleanup()
        throw new PortTaken(`port ${port} is held by another process`)
      }
    } catch (err) {
      if (err instanceof PortTaken) throw err
    }
    if (Date.now() > deadline) {
      killGroup('SIGKILL')
      cleanup()
      throw new Error(`${runtime} server not ready after ${timeoutMs} ms:\n${out}`)
    }
    await new Promise((r) => setTimeout(r, 150))
  }

  return {
    runtime,
    url,
    port,
    pid: child.pid!,
    output: () => out,
    async stop() {
      if (child.exitCode === null) {
        killGroup('SIGTERM')
        const timer = setTimeout(() => killGroup('SIGKILL'), 15_000)
        const code = await exited
        clearTimeout(timer)
        // wrangler leaves workerd behind unless the whole group goes.
        if (runtime === 'workerd') killGroup('SIGKILL')
        cleanup()
        return code
      }
      cleanup()
      return child.exitCode
    },
    async kill() {
      killGroup('SIGKILL')
      await exited
      cleanup()
    },
  }
}

/**
 * The access token of the admin a server was configured with, once it can
 * log in: a Worker ensures its admin after its first answer (waitUntil), so
 * the first logins may still fail.
 */
export async function adminToken(baseUrl: string, admin: { email: string; password: string }, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await fetch(`${baseUrl}/v1/auth/login`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(admin),
    })
    const token = ((await res.json()) as { accessToken?: string }).accessToken
    if (token) return token
    if (Date.now() > deadline) throw new Error(`the admin could not log in within ${timeoutMs} ms (last answer ${res.status})`)
    await new Promise((r) => setTimeout(r, 250))
  }
}
