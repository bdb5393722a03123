import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { docFiles, REPO_ROOT } from '../support/docs.ts'

/*
 * Every command the README and docs/ (its folders too) give to type goes
 * through `./run`, which is what a fresh clone has: Bun and Node live in
 * .tools/, off PATH, so `bun run …`, `node bench/…` or `node_modules/.bin/…`
 * fail there. Shell
 * blocks are checked line by line; inline code is checked for the forms that
 * are always commands. Naming what runs inside (`wrangler dev`, `bun build`,
 * a profiler flag) is an explanation and stays allowed.
 */

const FILES = docFiles()

/** A command line's program, past `NAME=value` prefixes and `NAME=$(`. */
const program = (line: string) =>
  line
    .replace(/^(\s*[A-Z_][A-Z0-9_]*=("[^"]*"|'[^']*'|\$\(|\S*)\s*)+/, '')
    .trim()
    .split(/\s+/)[0] ?? ''

const BARE = /^(bun|bunx|node|npx|npm|wrangler|vitest|tsc|biome|drizzle-kit|node_modules\/\S*)$/
const INLINE = /^(bun run|bunx|npx|bun scripts\/|node scripts\/|node bench\/|node_modules\/\.bin\/)/

function offences(file: string, text: string): string[] {
  const found: string[] = []
  for (const block of text.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)) {
    for (const line of block[1]!.replace(/\\\n/g, ' ').split('\n')) {
      const code = line.replace(/(^|\s)#.*$/, '')
      if (code.trim() !== '' && BARE.test(program(code))) found.push(`${file}: ${line.trim()}`)
    }
  }
  const prose = text.replace(/```[\s\S]*?```/g, '')
  for (const span of prose.matchAll(/`([^`\n]+)`/g)) if (INLINE.test(span[1]!.trim())) found.push(`${file}: \`${span[1]}\``)
  return found
}

describe('commands in the README and docs/', () => {
  it('all go through ./run', () => {
    const all = FILES.flatMap((f) => offences(f, readFileSync(join(REPO_ROOT, f), 'utf8')))
    expect(all).toEqual([])
  })

  it('the check finds the forms that fail on a fresh machine', () => {
    const sample = [
      '```sh',
      'bun run seed',
      'FUZZ_SEED=1 node_modules/.bin/vitest run x',
      'TOKEN=$(curl -s localhost:3000) # fine',
      './run node bench/login.ts 30',
      '```',
      'Run `node bench/login.ts 30` or `npx wrangler deploy`; `wrangler dev` explains.',
    ].join('\n')
    expect(offences('x.md', sample)).toEqual([
      'x.md: bun run seed',
      'x.md: FUZZ_SEED=1 node_modules/.bin/vitest run x',
      'x.md: `node bench/login.ts 30`',
      'x.md: `npx wrangler deploy`',
    ])
  })
})
