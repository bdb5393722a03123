import type { Reporter, TestModule } from 'vitest/node'

/** Prints, after the run, how many tests passed, failed and were skipped in each project: unit, integration and each contract target. */
export default class TargetSummary implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>) {
    const rows = new Map<string, { passed: number; failed: number; skipped: number; ms: number }>()
    for (const mod of modules) {
      const name = mod.project.name || 'default'
      const row = rows.get(name) ?? { passed: 0, failed: 0, skipped: 0, ms: 0 }
      row.ms += mod.diagnostic().duration
      for (const test of mod.children.allTests()) {
        const state = test.result().state
        if (state === 'passed') row.passed++
        else if (state === 'failed') row.failed++
        else row.skipped++
      }
      rows.set(name, row)
    }
    const order = [...rows.keys()].sort()
    const lines = ['', 'Results by project / runtime:', '  project               passed  failed  skipped   time']
    for (const name of order) {
      const r = rows.get(name)!
      lines.push(
        `  ${name.padEnd(20)} ${String(r.passed).padStart(7)} ${String(r.failed).padStart(7)} ${String(r.skipped).padStart(8)} ${(r.ms / 1000).toFixed(1).padStart(6)}s`,
      )
    }
    console.log(lines.join('\n'))
  }
}
