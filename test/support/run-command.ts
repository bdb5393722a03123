import { spawn } from 'node:child_process'
import { ROOT } from './app-server.ts'

/**
 * Runs a command in the repository to completion (killed after `timeoutMs`)
 * with only PATH, HOME and the given settings in its environment; returns its
 * exit code and everything it printed (read to the end: it resolves when the
 * output is closed, not at the exit, which can come first). It does not block
 * the event loop, so servers in the calling process go on answering. It
 * rejects when the command cannot be started.
 *
 * @example
 * ```ts
 * const { code, out } = await runCommand('bun', ['src/runtime/bun.ts'], { NODE_ENV: 'production' })
 * ```
 */
export function runCommand(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env } })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })
}
