import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { ROOT } from '../support/app-server.ts'
import { freePort } from '../support/free-port.ts'
import { freshClone, pathWithoutTools } from '../support/fresh-clone.ts'
import { runShell, type ShellCommand, shellSession } from '../support/shell-command.ts'

/*
 * The README's "First five minutes" and "A first order, step by step", run as
 * written in a fresh clone whose machine has no Bun or Node 22 on PATH: the
 * seed and `./run start` lines, the first look at the running service, then
 * every curl line of the walk-through in one shell, as a reader would paste
 * them. Only the port differs (a free one instead of 3000, through PORT, the
 * `localhost:3000` of the first look and the `API=` line). A line whose
 * comment says `→ <output>` must print that output (`<…>` stands for
 * anything); a line that waits on a background job ("a moment later") is run
 * again until it does. Every variable a line sets must be set.
 */

interface Line {
  command: string
  /** What it must print, from its `# … → <output>` comment. */
  expected: RegExp | undefined
}

/** The logical lines (continuations joined) of each sh block in the README section under `heading` (up to the next `#` or `##`). */
function sectionBlocks(heading: string): Line[][] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf(`\n${heading}\n`)
  if (start < 0) throw new Error(`README has no "${heading}" section`)
  const rest = readme.slice(start + heading.length + 2)
  const end = rest.search(/\n#{1,2} /)
  const blocks = [...rest.slice(0, end < 0 ? undefined : end).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!)
  return blocks.map((block) =>
    block
      .replace(/\\\n\s*/g, '')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => {
        const comment = l.match(/\s+#\s(.*)$/)
        const arrow = comment?.[1]?.match(/→\s*(.+)$/)?.[1]
        const expected = arrow
          ? new RegExp(
              `^${arrow
                .split(/<[^>]+>/)
                .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
                .join('\\S+')}$`,
            )
          : undefined
        return { command: comment ? l.slice(0, comment.index) : l, expected }
      }),
  )
}

describe('the README’s first five minutes', () => {
  const env = { PATH: pathWithoutTools(), HOME: process.env.HOME ?? '/tmp' }
  let clone: ReturnType<typeof freshClone>
  let server: ShellCommand | undefined

  beforeAll(() => {
    clone = freshClone()
  })
  afterAll(async () => {
    await server?.kill()
    clone?.remove()
  })

  it('seed, start, a first look, then sign up, order, pay and see it paid, with the README’s own lines', async () => {
    const [firstMinutes = []] = sectionBlocks('## First five minutes')
    const [walkThrough = []] = sectionBlocks('## A first order, step by step')
    const setup = firstMinutes.slice(0, 2)
    const firstLook = firstMinutes.slice(2)
    expect(setup.map((l) => l.command.trim())).toEqual([
      'ADMIN_EMAIL=admin@example.com ADMIN_PASSWORD=admin-password ./run seed',
      './run start',
    ])
    expect(firstLook.length).toBeGreaterThan(0)
    // The first look reaches the service as a reader's would; the test moves it to its own port.
    for (const line of firstLook) expect(line.command).toContain('localhost:3000')
    expect(walkThrough[0]?.command).toBe('API=http://localhost:3000')

    const seed = runShell(setup[0]!.command, { cwd: clone.dir, env })
    expect(await seed.exited, seed.output()).toBe(0)
    expect(seed.output()).toMatch(/admin admin@example\.com: created/)
    expect(seed.output()).toMatch(/demo products: 100/)

    const port = await freePort()
    server = runShell(setup[1]!.command, { cwd: clone.dir, env: { ...env, PORT: String(port) } })
    const up = vi.waitFor(async () => expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200), {
      timeout: 60_000,
      interval: 200,
    })
    const down = server.exited.then((code) => Promise.reject(new Error(`./run start exited with ${code}:\n${server!.output()}`)))
    // Once the server is up, its exit at the end of the test is no failure.
    down.catch(() => {})
    await Promise.race([up, down])

    const sh = shellSession({ cwd: clone.dir, env })
    /** Runs one README line as written (but for the port) and holds it to what the README says it does. */
    const runLine = async (line: Line, command = line.command) => {
      const assigned = command.match(/^([A-Z_]+)=\$\(/)?.[1]
      const run = async () => {
        const { code, out } = await sh.run(command)
        expect(code, `${command}\n${out}`).toBe(0)
        return out.trim()
      }
      if (line.expected) {
        // A job's effect shows "a moment later": the line is run again until it prints what the README says.
        await vi.waitFor(async () => expect(await run()).toMatch(line.expected!), { timeout: 20_000, interval: 250 })
      } else {
        await run()
      }
      if (assigned) {
        const value = (await sh.run(`echo "$${assigned}"`)).out.trim()
        expect(value, `${assigned} after: ${command}`).toMatch(/^[\w.-]+$/)
        expect(value).not.toBe('null')
      }
    }
    try {
      for (const line of firstLook) await runLine(line, line.command.replaceAll('localhost:3000', `127.0.0.1:${port}`))
      await sh.run(`API=http://127.0.0.1:${port}`)
      for (const line of walkThrough.slice(1)) await runLine(line)
    } catch (err) {
      console.error(server.output())
      throw err
    } finally {
      await sh.close()
    }
  }, 240_000)
})
