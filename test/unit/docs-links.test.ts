import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { docFiles, REPO_ROOT } from '../support/docs.ts'

/*
 * Every link in the README and docs/ leads somewhere: a relative link names a
 * file of the repository, and a `#fragment` a heading of that file (GitHub's
 * anchors). Links to other sites are not fetched. docs/DECISIONS.md opens
 * with an index that names every decision below it.
 */

const FILES = docFiles()

/** Text outside fenced blocks and code spans, where a link can be. */
const prose = (text: string) => text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '``')

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2… */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  for (const m of text.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6} (.+)$/gm)) {
    const base = m[1]!
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
      .replace(/ /g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

function brokenLinks(file: string, text: string, read: (path: string) => string | undefined): string[] {
  const broken: string[] = []
  for (const m of prose(text).matchAll(/\]\(([^)\s]+)\)/g)) {
    const target = m[1]!
    if (/^[a-z]+:/i.test(target)) continue
    const [path = '', fragment] = target.split('#')
    const resolved = path === '' ? file : join(dirname(file), path)
    const content = read(resolved)
    if (content === undefined) broken.push(`${file}: ${target} (no file ${resolved})`)
    else if (fragment !== undefined && resolved.endsWith('.md') && !anchors(content).has(fragment))
      broken.push(`${file}: ${target} (no heading #${fragment} in ${resolved})`)
  }
  return broken
}

const readRepo = (path: string) => {
  const full = join(REPO_ROOT, path)
  if (!existsSync(full)) return undefined
  return statSync(full).isFile() ? readFileSync(full, 'utf8') : ''
}

describe('links in the README and docs/', () => {
  it('all resolve to a file and, with a fragment, to one of its headings', () => {
    const broken = FILES.flatMap((f) => brokenLinks(f, readFileSync(join(REPO_ROOT, f), 'utf8'), readRepo))
    expect(broken).toEqual([])
  })

  it('the check finds a missing file and a missing heading', () => {
    const files: Record<string, string> = {
      'docs/a.md': '# A\n\n## The `x` decision’s name: 0.32× faster\n\n## Twice\n\n## Twice\n',
    }
    const sample = [
      '[ok](a.md#the-x-decisions-name-032-faster) [ok](#twice-1) [ok](https://example.com/#nowhere)',
      '[gone](b.md) [no heading](a.md#nothing) `[code](c.md)`',
      '```sh',
      'echo "[fenced](d.md)"',
      '```',
    ].join('\n')
    expect(brokenLinks('docs/a.md', `${files['docs/a.md']}\n${sample}`, (p) => files[p])).toEqual([
      'docs/a.md: b.md (no file docs/b.md)',
      'docs/a.md: a.md#nothing (no heading #nothing in docs/a.md)',
    ])
  })
})

describe('docs/DECISIONS.md', () => {
  it('opens with an index that links every decision, and nothing else', () => {
    const text = readFileSync(join(REPO_ROOT, 'docs/DECISIONS.md'), 'utf8')
    const firstDecision = text.search(/^## /m)
    const index = [...text.slice(0, firstDecision).matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]!).sort()
    const headings = text
      .slice(firstDecision)
      .split('\n')
      .filter((l) => l.startsWith('## '))
    const decisions = [...anchors(headings.join('\n'))].sort()
    expect(index).toEqual(decisions)
  })
})
