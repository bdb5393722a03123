import { spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/*
 * Running PostgreSQL's own server binaries, for `./run db:local` and for the
 * tests' throwaway servers.
 */

/**
 * The directory of `postgres` and `initdb`: PG_BIN, else Debian's
 * /usr/lib/postgresql/<major>/bin (the newest; not on PATH), else PATH.
 *
 * @example
 * ```ts
 * spawnSync(join(findPostgresBin(), 'initdb'), ['-D', dir])
 * ```
 */
export function findPostgresBin(): string {
  const fromEnv = process.env.PG_BIN
  if (fromEnv && existsSync(join(fromEnv, 'postgres'))) return fromEnv
  const root = '/usr/lib/postgresql'
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((d) => /^\d+$/.test(d))
        .sort((a, b) => Number(b) - Number(a))
    : []
  for (const major of majors) {
    const bin = join(root, major, 'bin')
    if (existsSync(join(bin, 'postgres')) && existsSync(join(bin, 'initdb'))) return bin
  }
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim()
  if (onPath && existsSync(join(onPath, '..', 'postgres'))) return join(onPath, '..')
  throw new Error('PostgreSQL server binaries not found: install PostgreSQL (Debian: apt-get install postgresql-15) or set PG_BIN')
}

/** initdb refuses to run as root, so as root the server runs as the `postgres` user (which Debian's package creates). */
export const runsAsPostgresUser = process.getuid?.() === 0

/** `cmd args`, run as the `postgres` user when this process is root. */
export function asPostgresUser(cmd: string, args: string[]): [string, string[]] {
  return runsAsPostgresUser ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', cmd, ...args]] : [cmd, args]
}

/** The ids files the server writes must belong to, when it runs as the `postgres` user; undefined otherwise. */
export function postgresUserIds(): { uid: number; gid: number } | undefined {
  if (!runsAsPostgresUser) return undefined
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' })
  const uid = id('-u')
  if (uid.status !== 0) throw new Error('running as root, PostgreSQL needs a `postgres` user to run as (initdb refuses root)')
  return { uid: Number(uid.stdout.trim()), gid: Number(id('-g').stdout.trim()) }
}

/**
 * Creates a data directory with `initdb`: `user` as its superuser with
 * `password`, SCRAM over TCP, trust over the Unix socket, UTF-8, C locale.
 * The directory's parent must exist; as root it is handed to `postgres`.
 *
 * @example
 * ```ts
 * initdb(findPostgresBin(), { dataDir: '.data/postgres', user: 'edgeshop', password: 'secret' })
 * ```
 */
export function initdb(bin: string, opts: { dataDir: string; user: string; password: string; noSync?: boolean; timeoutMs?: number }): void {
  const ids = postgresUserIds()
  mkdirSync(opts.dataDir, { mode: 0o700 })
  if (ids) chownSync(opts.dataDir, ids.uid, ids.gid)
  // Beside the data directory, not in it (initdb wants it empty), and gone once read.
  const pwfile = `${opts.dataDir}.pwfile`
  writeFileSync(pwfile, `${opts.password}\n`, { mode: 0o600 })
  if (ids) chownSync(pwfile, ids.uid, ids.gid)
  const args = ['-D', opts.dataDir, '-U', opts.user, `--pwfile=${pwfile}`, '--auth-host=scram-sha-256', '--auth-local=trust']
  args.push('-E', 'UTF8', '--locale=C', ...(opts.noSync ? ['--no-sync'] : []))
  const [cmd, argv] = asPostgresUser(join(bin, 'initdb'), args)
  const init = spawnSync(cmd, argv, { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000 })
  rmSync(pwfile, { force: true })
  if (init.status !== 0) {
    rmSync(opts.dataDir, { recursive: true, force: true })
    const hint = ids ? ' (as root, the `postgres` user must be able to reach this directory)' : ''
    throw new Error(`initdb failed${hint}: ${init.stderr || init.stdout || init.error?.message}`)
  }
}
