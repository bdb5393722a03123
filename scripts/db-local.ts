/**
 * `./run db:local`: a PostgreSQL for local work, in `.data/postgres`, on
 * 127.0.0.1:15432, with the database `edgeshop` migrated. It runs in the
 * foreground until Ctrl-C; `./run db:local stop` stops it from another
 * terminal. Idempotent: the data directory is made once and kept, a server
 * already running is left as it is, and the migrations are applied each time.
 *
 * `./run dev:worker` connects to it (wrangler.toml's Hyperdrive
 * `localConnectionString`); Bun and Node take it as DATABASE_URL.
 *
 * Server binaries: PG_BIN, Debian's /usr/lib/postgresql/<major>/bin, or
 * PATH. As root the server runs as the `postgres` user (initdb refuses root).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import postgres from 'postgres'
import { loadConfig } from '../src/config.ts'
import { createPostgresDatabase } from '../src/db/postgres.ts'
import { migrate } from '../src/runtime/migrate.ts'
import { asPostgresUser, findPostgresBin, initdb } from './postgres-binaries.ts'

const PORT = 15432
const USER = 'edgeshop'
// A password only because wrangler refuses a Hyperdrive connection string without one; the server listens on loopback only.
const PASSWORD = 'edgeshop-local'
const DATABASE = 'edgeshop'
/** The URL wrangler.toml names as the Hyperdrive `localConnectionString`. */
const URL_OF = (database: string) => `postgres://${USER}:${PASSWORD}@127.0.0.1:${PORT}/${database}`
const DATA = resolve(import.meta.dirname, '../.data/postgres')
const LOG = `${DATA}.log`

const say = (msg: string) => process.stderr.write(`[db:local] ${msg}\n`)

/** The server's pid from its lock file, when that process is alive. */
function runningPid(): number | undefined {
  const pidFile = join(DATA, 'postmaster.pid')
  if (!existsSync(pidFile)) return undefined
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0])
  if (!Number.isInteger(pid) || pid <= 0) return undefined
  try {
    process.kill(pid, 0)
    return pid
  } catch {
    return undefined
  }
}

function initialise(bin: string) {
  mkdirSync(dirname(DATA), { recursive: true })
  say(`creating a PostgreSQL data directory in ${DATA}`)
  initdb(bin, { dataDir: DATA, user: USER, password: PASSWORD })
}

function startServer(bin: string): ChildProcess {
  const [cmd, args] = asPostgresUser(join(bin, 'postgres'), [
    '-D',
    DATA,
    '-p',
    String(PORT),
    '-c',
    'listen_addresses=127.0.0.1',
    // No Unix socket: its default directory may not exist or be writable here; clients use TCP.
    '-c',
    'unix_socket_directories=',
  ])
  const log = createWriteStream(LOG)
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout!.on('data', (d) => log.write(d))
  child.stderr!.on('data', (d) => log.write(d))
  child.once('exit', () => void log.end())
  return child
}

/** Resolves once our server answers on the port (not another one that holds it); rejects when it exits or after a minute. */
async function waitReady(child: ChildProcess | undefined) {
  const deadline = Date.now() + 60_000
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`postgres exited with ${child.exitCode}; see ${LOG}:\n${tail()}`)
    const sql = postgres(URL_OF('postgres'), { max: 1, connect_timeout: 2, onnotice: () => {} })
    try {
      const [row] = await sql`select current_setting('data_directory') as dir`
      if (row?.dir !== DATA) throw new Error(`port ${PORT} is held by another PostgreSQL (data in ${row?.dir})`)
      return
    } catch (err) {
      if (/held by another/.test((err as Error).message) || Date.now() > deadline) throw err
      await new Promise((r) => setTimeout(r, 200))
    } finally {
      await sql.end({ timeout: 1 })
    }
  }
}

const tail = () => (existsSync(LOG) ? readFileSync(LOG, 'utf8').split('\n').slice(-15).join('\n') : '')

async function createAndMigrate() {
  const admin = postgres(URL_OF('postgres'), { max: 1, onnotice: () => {} })
  try {
    const [exists] = await admin`select 1 from pg_database where datname = ${DATABASE}`
    if (!exists) await admin.unsafe(`create database ${DATABASE}`)
  } finally {
    await admin.end({ timeout: 1 })
  }
  const { config } = loadConfig({ DATABASE_URL: URL_OF(DATABASE) }, { runtime: 'node' })
  const handle = createPostgresDatabase({ url: config.database.url!, poolMax: 1, timeoutMs: 10_000, statementTimeoutMs: 600_000 })
  try {
    await migrate(handle)
  } finally {
    await handle.close()
  }
}

async function stop(pid: number): Promise<void> {
  // The postmaster's fast shutdown: sessions are ended, and the data is checkpointed.
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + 30_000
  while (runningPid() === pid) {
    if (Date.now() > deadline) throw new Error(`PostgreSQL (pid ${pid}) did not stop within 30 s`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

async function start() {
  const ready = `PostgreSQL is ready: ${URL_OF(DATABASE)}`
  const already = runningPid()
  if (already) {
    await waitReady(undefined)
    await createAndMigrate()
    say(`${ready} (already running, pid ${already}; \`./run db:local stop\` stops it)`)
    return
  }
  const bin = findPostgresBin()
  if (!existsSync(join(DATA, 'PG_VERSION'))) initialise(bin)
  const child = startServer(bin)
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  let stopping = false
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (stopping) return
      stopping = true
      say('stopping PostgreSQL')
      if (child.exitCode === null) child.kill('SIGINT')
    })
  }
  try {
    await waitReady(child)
    await createAndMigrate()
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGINT')
    await exited
    throw err
  }
  say(`${ready} (data in .data/postgres, log in .data/postgres.log)`)
  say('`./run dev:worker` uses it; Bun and Node: DATABASE_URL=<that URL> ./run start. Ctrl-C stops it.')
  const code = await exited
  say(code === 0 ? 'PostgreSQL stopped' : `PostgreSQL exited with ${code}; see .data/postgres.log:\n${tail()}`)
  process.exit(code === 0 ? 0 : 1)
}

const verb = process.argv[2] ?? 'start'
try {
  if (verb === 'start') await start()
  else if (verb === 'stop') {
    const pid = runningPid()
    if (pid) {
      await stop(pid)
      say('PostgreSQL stopped')
    } else say('PostgreSQL is not running')
  } else {
    say('usage: ./run db:local [start|stop]')
    process.exit(2)
  }
} catch (err) {
  say((err as Error).message)
  process.exit(1)
}
