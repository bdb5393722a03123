import { type ChildProcess, spawn } from 'node:child_process'

/**
 * A command line run by bash as a user would type it, in its own process
 * group (so that everything it starts can be stopped together), with its
 * output kept for waiting on and for failure messages.
 */
export interface ShellCommand {
  readonly line: string
  /** The process group's leader: bash, or the command bash replaced itself with (`exec`, a lone simple command). */
  readonly pid: number
  output(): string
  /** Resolves when the output matches `pattern`; rejects when the command exits first or after `timeoutMs`. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<void>
  /** The exit code (null after a signal). */
  readonly exited: Promise<number | null>
  /** Sends `signal` to the whole process group, as Ctrl-C in a terminal does with SIGINT. */
  signal(signal: NodeJS.Signals): void
  /** SIGKILL to the group, then waits for the exit: for cleanup whatever happened. */
  kill(): Promise<void>
}

const groups = new Set<number>()
let hooked = false

/**
 * @example
 * ```ts
 * const db = runShell('./run db:local', { cwd: clone.dir, env: { PATH, HOME } })
 * await db.waitForOutput(/ready/, 60_000)
 * db.signal('SIGINT')
 * ```
 */
export function runShell(line: string, opts: { cwd: string; env: Record<string, string> }): ShellCommand {
  const child: ChildProcess = spawn('bash', ['-c', line], {
    cwd: opts.cwd,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  const pid = child.pid!
  groups.add(pid)
  if (!hooked) {
    hooked = true
    // A failed test that never reached its cleanup must not leave servers behind.
    process.once('exit', () => {
      for (const g of groups) {
        try {
          process.kill(-g, 'SIGKILL')
        } catch {}
      }
    })
  }
  let out = ''
  const listeners = new Set<() => void>()
  const take = (d: Buffer) => {
    out += d.toString()
    for (const l of listeners) l()
  }
  child.stdout!.on('data', take)
  child.stderr!.on('data', take)
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      groups.delete(pid)
      for (const l of listeners) l()
      resolve(code)
    }),
  )
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig)
    } catch {}
  }
  return {
    line,
    pid,
    output: () => out,
    exited,
    signal,
    waitForOutput: (pattern, timeoutMs) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (pattern.test(out)) done(() => resolve())
          else if (child.exitCode !== null || child.signalCode !== null)
            done(() => reject(new Error(`\`${line}\` exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}:\n${out}`)))
        }
        const timer = setTimeout(
          () => done(() => reject(new Error(`\`${line}\` did not print ${pattern} within ${timeoutMs} ms:\n${out}`))),
          timeoutMs,
        )
        const done = (settle: () => void) => {
          clearTimeout(timer)
          listeners.delete(check)
          settle()
        }
        listeners.add(check)
        check()
      }),
    async kill() {
      signal('SIGKILL')
      // Members of the group may outlive the leader; the leader's exit is what can be awaited.
      await exited
    },
  }
}

/** One bash, kept open, that runs command after command with the same variables, as a terminal does. */
export interface ShellSession {
  /** Runs one command line (continuations allowed); resolves with its exit code and what it printed. */
  run(command: string, timeoutMs?: number): Promise<{ code: number; out: string }>
  close(): Promise<void>
}

/**
 * @example
 * ```ts
 * const sh = shellSession({ cwd, env })
 * await sh.run('X=$(echo hi)')
 * expect((await sh.run('echo $X')).out).toBe('hi\n')
 * ```
 */
export function shellSession(opts: { cwd: string; env: Record<string, string> }): ShellSession {
  const child = spawn('bash', ['--noprofile', '--norc'], { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let wake: (() => void) | undefined
  const take = (d: Buffer) => {
    out += d.toString()
    wake?.()
  }
  child.stdout!.on('data', take)
  child.stderr!.on('data', take)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  let n = 0
  return {
    async run(command, timeoutMs = 30_000) {
      const marker = `__done_${process.pid}_${n++}__`
      out = ''
      child.stdin!.write(`${command}\necho "${marker}$?"\n`)
      const pattern = new RegExp(`${marker}(\\d+)\\n`)
      const deadline = Date.now() + timeoutMs
      for (;;) {
        const m = out.match(pattern)
        if (m) return { code: Number(m[1]), out: out.slice(0, m.index) }
        if (child.exitCode !== null) throw new Error(`the shell exited while running: ${command}\n${out}`)
        const left = deadline - Date.now()
        if (left <= 0) throw new Error(`no end of \`${command}\` within ${timeoutMs} ms:\n${out}`)
        await new Promise<void>((r) => {
          const timer = setTimeout(r, left)
          wake = () => {
            clearTimeout(timer)
            r()
          }
        })
      }
    },
    async close() {
      child.stdin!.end()
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    },
  }
}
