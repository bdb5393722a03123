/**
 * Spawns a throwaway `redis-server` on 127.0.0.1 for tests and benchmarks.
 *
 * The server has no persistence (`--save ''`, `--appendonly no`) and runs in
 * a fresh temp dir (`--dir`) that is removed when it stops. The handle can
 * stop and start the *same port* again to simulate outages: after `stop()`
 * the port refuses connections; `start()` brings up an empty server on it.
 * `pause()` (SIGSTOP) simulates a hung server: TCP connects still succeed
 * (kernel backlog) but nothing is ever answered until `resume()`.
 *
 * Every spawned server is SIGKILLed if the Node process exits without
 * stopping it.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './free-port.ts'
import { createRespClient } from './resp.ts'

export interface StartRedisServerOptions {
  /** Port to listen on; default: a free port chosen via `freePort()`. */
  port?: number
  /** Bound on waiting until the server answers PING. Default 10 000 ms. */
  startTimeoutMs?: number
  /** `--databases` (number of SELECT-able dbs). Default 16 (Redis default). */
  databases?: number
  /** Extra `redis-server` command-line arguments, e.g. `['--maxmemory', '64mb']`. */
  extraArgs?: string[]
  /** Binary to run. Default: `$REDIS_SERVER_BIN`, else `redis-server` from PATH. */
  binary?: string
}

export interface RedisServerHandle {
  readonly host: '127.0.0.1'
  readonly port: number
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
  /** True between a successful start and the process exiting. */
  readonly running: boolean
  readonly pid: number | undefined
  /** SIGTERM, then SIGKILL after 3 s; waits for exit and removes the temp dir. Idempotent. */
  stop(): Promise<void>
  /** Immediate SIGKILL (crash); waits for exit and removes the temp dir. Idempotent. */
  kill(): Promise<void>
  /** Starts an empty server on the same port again (no-op while running). */
  start(): Promise<void>
  /** `stop()` then `start()`; all data is lost. */
  restart(): Promise<void>
  /** SIGSTOP: the server hangs (connections are accepted, nothing is answered). */
  pause(): void
  /** SIGCONT after `pause()`. */
  resume(): void
  /** Last ~16 KiB of the server's stdout/stderr, for diagnostics. */
  logs(): string
}

const live = new Set<ChildProcess>()
let exitHookInstalled = false
function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL')
      } catch {
        // already gone
      }
    }
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function defaultBinary(): string {
  return process.env.REDIS_SERVER_BIN ?? 'redis-server'
}

interface Running {
  child: ChildProcess
  dir: string
  exited: Promise<void>
  hasExited: boolean
}

export async function startRedisServer(opts: StartRedisServerOptions = {}): Promise<RedisServerHandle> {
  installExitHook()
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000
  const binary = opts.binary ?? defaultBinary()
  let log = ''
  const appendLog = (chunk: Buffer): void => {
    log += chunk.toString('utf8')
    if (log.length > 16_384) log = log.slice(log.length - 16_384)
  }
  let current: Running | null = null
  let paused = false

  const spawnOn = async (port: number): Promise<Running> => {
    const dir = await mkdtemp(join(tmpdir(), 'edgeshop-redis-'))
    const args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
      '--daemonize',
      'no',
      '--databases',
      String(opts.databases ?? 16),
      '--logfile',
      '',
      ...(opts.extraArgs ?? []),
    ]
    let child: ChildProcess
    try {
      child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (err) {
      await rm(dir, { recursive: true, force: true })
      throw err
    }
    const running: Running = { child, dir, exited: Promise.resolve(), hasExited: false }
    running.exited = new Promise<void>((resolve) => {
      const done = (): void => {
        running.hasExited = true
        live.delete(child)
        resolve()
      }
      child.once('exit', done)
      child.once('error', (err) => {
        appendLog(Buffer.from(`spawn error: ${err.message}\n`))
        done()
      })
    })
    live.add(child)
    child.stdout?.on('data', appendLog)
    child.stderr?.on('data', appendLog)

    // Wait (bounded) until it answers, or fail fast if it exits.
    const client = createRespClient({ port, connectTimeoutMs: 500, commandTimeoutMs: 1000 })
    const deadline = Date.now() + startTimeoutMs
    try {
      for (;;) {
        if (running.hasExited) {
          throw new Error(`redis-server on port ${port} exited during startup:\n${log}`)
        }
        try {
          // PING is not enough: another server may already own the port. Make
          // sure the one answering is the process we spawned.
          const reply = await client.send(['INFO', 'server'])
          if (Buffer.isBuffer(reply) && (reply as Buffer).toString('latin1').includes(`\r\nprocess_id:${child.pid}\r\n`)) {
            return running
          }
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) {
          child.kill('SIGKILL')
          throw new Error(`redis-server on port ${port} did not answer PING within ${startTimeoutMs} ms:\n${log}`)
        }
        await Promise.race([sleep(25), running.exited])
      }
    } catch (err) {
      await Promise.race([running.exited, sleep(2000)])
      await rm(dir, { recursive: true, force: true })
      throw err
    } finally {
      await client.close()
    }
  }

  const terminate = async (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> => {
    const r = current
    if (r === null) return
    current = null
    if (!r.hasExited) {
      r.child.kill(signal)
      if (paused) r.child.kill('SIGCONT') // a stopped process only acts on SIGTERM once continued
      const exitedInTime = await Promise.race([r.exited.then(() => true), sleep(3000).then(() => false)])
      if (!exitedInTime) {
        r.child.kill('SIGKILL')
        await Promise.race([r.exited, sleep(2000)])
      }
    }
    paused = false
    await rm(r.dir, { recursive: true, force: true })
  }

  // Pick the port: given, or free (retrying if another process grabs it first).
  let port: number
  if (opts.port !== undefined) {
    port = opts.port
    current = await spawnOn(port)
  } else {
    let lastErr: unknown
    for (let attempt = 0; ; attempt++) {
      port = await freePort()
      try {
        current = await spawnOn(port)
        break
      } catch (err) {
        lastErr = err
        if (attempt >= 2) throw lastErr
      }
    }
  }
  const fixedPort = port

  const start = async (): Promise<void> => {
    if (current !== null && !current.hasExited) return
    if (current !== null) await terminate('SIGKILL') // exited on its own: clean up
    // The old listener is gone, but allow a few retries in case the port is briefly busy.
    let lastErr: unknown
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        current = await spawnOn(fixedPort)
        return
      } catch (err) {
        lastErr = err
        await sleep(100)
      }
    }
    throw lastErr
  }

  return {
    host: '127.0.0.1',
    port: fixedPort,
    url: `redis://127.0.0.1:${fixedPort}`,
    get running(): boolean {
      return current !== null && !current.hasExited
    },
    get pid(): number | undefined {
      return current?.child.pid
    },
    stop: () => terminate('SIGTERM'),
    kill: () => terminate('SIGKILL'),
    start,
    async restart(): Promise<void> {
      await terminate('SIGTERM')
      await start()
    },
    pause(): void {
      if (current === null || current.hasExited) throw new Error('redis-server is not running')
      current.child.kill('SIGSTOP')
      paused = true
    },
    resume(): void {
      if (current === null || current.hasExited) return
      current.child.kill('SIGCONT')
      paused = false
    },
    logs: () => log,
  }
}
