import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { asPostgresUser, findPostgresBin, initdb, postgresUserIds } from '../../scripts/postgres-binaries.ts'
import { freePort } from './free-port.ts'

export { findPostgresBin }

/*
 * A real PostgreSQL server for one test run: initdb into a throwaway
 * directory, `postgres` on a free loopback port, stopped and removed at the
 * end. Server binaries come from PG_BIN, or from Debian's
 * /usr/lib/postgresql/<major>/bin (not on PATH). As root, the server runs as
 * the `postgres` user, because initdb refuses root.
 */

export interface PostgresServer {
  port: number
  /** A connection URL for one database on this server. */
  url(database?: string): string
  /** Creates a fresh, empty database. */
  createDatabase(name: string): Promise<string>
  /**
   * Stops the server, keeping its data, so that a test can see the database go
   * away. `fast` (the default) is a clean shutdown; `immediate` is what
   * `pg_ctl stop -m immediate` does: every backend is killed at once, there is
   * no checkpoint, and the next start runs crash recovery.
   */
  pause(opts?: { mode?: 'fast' | 'immediate' }): Promise<void>
  /** Starts it again on the same port with the same data. */
  resume(): Promise<void>
  stop(): Promise<void>
}

/** Password of the `postgres` role; connections over TCP authenticate with SCRAM, as in production. */
const PASSWORD = 'edgeshop-test'

async function waitReady(url: string, dataDir: string, child: ChildProcess, log: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}:\n${log()}`)
    const sql = postgres(url, { max: 1, connect_timeout: 1, onnotice: () => {} })
    try {
      // Another test run's server may hold this port for a moment: only ours has our data directory.
      const [row] = await sql`select current_setting('data_directory') as dir`
      if (row?.dir !== dataDir) throw new Error(`port is held by another PostgreSQL (${row?.dir})`)
      return
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`postgres did not become ready in ${timeoutMs} ms: ${(err as Error).message}\n${log()}`)
      await new Promise((r) => setTimeout(r, 100))
    } finally {
      await sql.end({ timeout: 1 })
    }
  }
}

/**
 * Starts a PostgreSQL server for tests.
 *
 * @example
 * ```ts
 * const pg = await startPostgres()
 * const url = await pg.createDatabase('contract_bun')
 * await pg.stop()
 * ```
 */
export async function startPostgres(
  opts: {
    timeoutMs?: number
    /** fsync, full-page writes and synchronous commits on, as in production (slower). */
    durable?: boolean
    /**
     * Keeps synchronous commits on when not `durable`: a commit is acknowledged
     * once its WAL is written to the kernel, so a crash of PostgreSQL (not of
     * the machine) loses no acknowledged commit. Off, the last few hundred
     * milliseconds of acknowledged commits may be lost.
     */
    synchronousCommit?: boolean
    /**
     * A streaming replica of this server instead of a new cluster: its data directory is a base backup taken with
     * `pg_basebackup -R` (which writes `primary_conninfo` and `standby.signal`), and it runs as a hot standby on its
     * own loopback port. The primary needs nothing more: PostgreSQL 15 defaults to `wal_level=replica` and
     * `max_wal_senders=10`, and initdb's pg_hba.conf admits replication connections from loopback.
     */
    standbyOf?: PostgresServer
  } = {},
): Promise<PostgresServer> {
  const bin = findPostgresBin()
  const timeoutMs = opts.timeoutMs ?? 30_000
  const dir = mkdtempSync(join(tmpdir(), 'edgeshop-pg-'))
  const ids = postgresUserIds()
  if (ids) chownSync(dir, ids.uid, ids.gid)
  const data = join(dir, 'data')

  if (opts.standbyOf) {
    const args = ['-D', data, '-R', '-X', 'stream', '-c', 'fast', '--no-sync', '-d', opts.standbyOf.url()]
    const [cmd, argv] = asPostgresUser(join(bin, 'pg_basebackup'), args)
    const backup = spawnSync(cmd, argv, { encoding: 'utf8', timeout: timeoutMs })
    if (backup.status !== 0) throw new Error(`pg_basebackup failed: ${backup.stderr || backup.stdout || backup.error?.message}`)
  } else {
    initdb(bin, { dataDir: data, user: 'postgres', password: PASSWORD, noSync: true, timeoutMs })
  }

  const port = await freePort()
  const url = (database = 'postgres') => `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/${database}`
  let child: ChildProcess | undefined
  let output = ''

  const start = async () => {
    output = ''
    const settings = [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${dir}`,
      '-c',
      'max_connections=300',
      '-c',
      'shared_buffers=128MB',
      '-c',
      'wal_level=replica',
      '-c',
      'max_wal_senders=10',
      // A standby's queries are not cancelled for rows the primary's vacuum removed.
      '-c',
      'hot_standby_feedback=on',
      ...(opts.durable
        ? []
        : ['-c', 'fsync=off', '-c', `synchronous_commit=${opts.synchronousCommit ? 'on' : 'off'}`, '-c', 'full_page_writes=off']),
    ]
    const [cmd, args] = asPostgresUser(join(bin, 'postgres'), ['-D', data, '-p', String(port), ...settings])
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    child = proc
    proc.stdout!.on('data', (d) => (output = (output + d).slice(-8000)))
    proc.stderr!.on('data', (d) => (output = (output + d).slice(-8000)))
    await waitReady(url(), data, proc, () => output, timeoutMs)
  }

  const halt = async (mode: 'fast' | 'immediate' = 'fast') => {
    const proc = child
    if (!proc || proc.exitCode !== null) return
    const exited = new Promise<void>((r) => proc.once('exit', () => r()))
    // The postmaster's shutdown signals: SIGINT is a fast shutdown, SIGQUIT an immediate one.
    proc.kill(mode === 'immediate' ? 'SIGQUIT' : 'SIGINT')
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }

  await start()

  return {
    port,
    url,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`)
      const sql = postgres(url(), { max: 1, onnotice: () => {} })
      try {
        await sql.unsafe(`create database ${name}`)
      } finally {
        await sql.end({ timeout: 1 })
      }
      return url(name)
    },
    pause: (pauseOpts = {}) => halt(pauseOpts.mode),
    resume: start,
    async stop() {
      await halt()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Ends the clients, then stops the servers in order (a standby before its primary): an `afterAll`. */
export async function stopAll(clients: (postgres.Sql | undefined)[], servers: (PostgresServer | undefined)[]): Promise<void> {
  await Promise.all(clients.map((c) => c?.end({ timeout: 1 })))
  for (const server of servers) await server?.stop()
}
