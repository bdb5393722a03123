import { spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ROOT } from './app-server.ts'

/**
 * The repository as a fresh clone has it, in a temporary directory: the files
 * git tracks plus new ones it does not ignore (the change under test), with
 * their timestamps, and none of the ignored ones (.data, .dev.vars,
 * .wrangler). node_modules and .tools are linked from this checkout, so
 * `./run` finds them installed and installs nothing.
 *
 * @example
 * ```ts
 * const clone = freshClone()
 * spawn('./run', ['start'], { cwd: clone.dir })
 * clone.remove()
 * ```
 */
export function freshClone(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'edgeshop-clone-'))
  // As a clone would be: readable by other users (the local PostgreSQL runs as `postgres` when this is root).
  chmodSync(dir, 0o755)
  const list = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
  if (list.status !== 0) throw new Error(`git ls-files failed: ${list.stderr}`)
  const linked = ['node_modules', '.tools']
  for (const file of list.stdout.split('\0')) {
    // A checkout may hold .tools as a link, which the ignore rule for the directory does not cover.
    if (file && !linked.includes(file) && existsSync(join(ROOT, file)))
      cpSync(join(ROOT, file), join(dir, file), { preserveTimestamps: true, verbatimSymlinks: true })
  }
  for (const name of linked) symlinkSync(join(ROOT, name), join(dir, name))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** PATH as a machine without edgeshop's tools has it: without `.tools` and any node_modules/.bin that `./run` put first. */
export function pathWithoutTools(): string {
  return (process.env.PATH ?? '')
    .split(':')
    .filter((p) => p && !p.includes('/.tools/') && !p.endsWith('node_modules/.bin'))
    .join(':')
}
