import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT } from '../support/app-server.ts'
import { runCommand } from '../support/run-command.ts'

/*
 * `./run bench --against HEAD --quick --cases bundle` end to end: HEAD
 * unpacked with `git archive`, both Worker bundles built, the table printed
 * and the results written. HEAD against the working tree builds the same
 * bundle byte for byte (this test's own file changes nothing in it), so the
 * verdict is "within 5 %" with a ratio of exactly 1.
 */

const dir = mkdtempSync(join(tmpdir(), 'edgeshop-bench-ab-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('./run bench --against', () => {
  it('compares the Worker bundle of HEAD with the working tree', { timeout: 120_000 }, async () => {
    const out = join(dir, 'ab.json')
    const { code, out: printed } = await runCommand(
      './run',
      ['bench', '--against', 'HEAD', '--quick', '--cases', 'bundle', '--out', out],
      {},
      110_000,
    )
    expect(code, printed).toBe(0)
    const head = spawnSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).stdout.trim()
    expect(printed).toContain('### Worker bundle: wrangler deploy --dry-run --minify (bytes, lower is better; built once per side)')
    expect(printed).toMatch(
      new RegExp(`\\| \\| A: HEAD \\(${head.slice(0, 12)}\\) \\| B: working tree \\(${head.slice(0, 12)}.*\\) \\| B/A \\|`),
    )
    expect(printed).toMatch(/\| minified \+ gzip -9 \| [\d,]+ \| [\d,]+ \| 1\.000× \| 0\.0 % \| 0\.0 % \| – \| within 5 % \|/)
    expect(printed).toContain('Guard (B within 5 % of A): met on all 2 figures.')

    const results = JSON.parse(readFileSync(out, 'utf8'))
    expect(results).toMatchObject({ quick: true, guard: 0.05, outcome: 'met', a: { rev: 'HEAD', commit: head }, b: { commit: head } })
    expect(results.cases.map((c: { name: string }) => c.name)).toEqual(['minified', 'minified + gzip -9'])
    for (const c of results.cases) {
      expect(c).toMatchObject({ case: 'bundle', better: 'lower', ratio: 1, verdict: 'within', noisy: false })
      expect(c.a).toEqual(c.b)
      // The bundle is about a megabyte minified, a quarter of that gzipped (docs/BENCHMARKS.md, Workers).
      expect(c.medianA).toBeGreaterThan(100_000)
    }
  })
})
