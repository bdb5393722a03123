import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ACTIONS, type LoadSummary } from '../support/load-generator.ts'
import type { InvariantResult } from './invariants.ts'

/*
 * The figures of a run: what each scenario sent and got back, what each
 * fault did and how long the service took to recover, and the invariants.
 * Printed at the end of the run and written as JSON next to the temp files.
 */

export interface FaultFigures {
  fault: string
  /** When the fault began and how long it lasted, in ms from the start of the load. */
  atMs: number
  durationMs: number
  /** Fault-specific figures (recovery times, answers while down, …). */
  figures: Record<string, number | string>
}

export interface ScenarioReport {
  name: string
  runtimes: string
  seconds: number
  summary: LoadSummary
  faults: FaultFigures[]
  invariants: InvariantResult[]
  notes: Record<string, number | string>
}

const reports: ScenarioReport[] = []

/** Keeps a scenario's figures for the end of the run; the caller may add invariants and notes to it later. */
export function record(report: ScenarioReport): ScenarioReport {
  reports.push(report)
  return report
}

function format(r: ScenarioReport): string {
  const s = r.summary
  const lines = [
    `■ ${r.name} (${r.runtimes}): ${r.seconds.toFixed(1)} s, ${s.requests} requests (${Math.round(s.requests / r.seconds)}/s), 5xx ${s.errors5xx}, no answer ${s.noAnswer}`,
    `  by status: ${Object.entries(s.byStatus)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}×${v}`)
      .join(' ')}`,
    `  ${ACTIONS.map((a) => {
      const x = s.byAction[a]
      return `${a} ${x.requests} (p50 ${x.latencyMs.p50} ms, p99 ${x.latencyMs.p99} ms, max ${x.latencyMs.max} ms)`
    }).join(' | ')}`,
  ]
  for (const f of r.faults) {
    lines.push(
      `  fault: ${f.fault} at ${(f.atMs / 1000).toFixed(1)} s for ${(f.durationMs / 1000).toFixed(1)} s — ${Object.entries(f.figures)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}`,
    )
  }
  if (Object.keys(r.notes).length > 0)
    lines.push(
      `  ${Object.entries(r.notes)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ')}`,
    )
  for (const i of r.invariants) lines.push(`  ${i.ok ? 'ok  ' : 'FAIL'} ${i.name} (${i.detail})`)
  return lines.join('\n')
}

/** Prints every scenario's figures and writes them as JSON; returns the JSON file's path. */
export function printReport(): string {
  const file = join(tmpdir(), 'edgeshop-reliability-report.json')
  writeFileSync(file, `${JSON.stringify({ finishedAt: new Date().toISOString(), scenarios: reports }, null, 2)}\n`)
  console.log(`\nreliability figures (also in ${file})\n\n${reports.map(format).join('\n\n')}\n`)
  return file
}
