import { spawn } from 'node:child_process'
import { ROOT } from './app-server.ts'

/**
 * Runs a command in the repository to completion (killed after `timeoutMs`)
 * with only PATH, HOME and the given settings in its environment; returns its
 * exit code and everything it printed.
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
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env } })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })
}
