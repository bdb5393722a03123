import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { REPO_ROOT } from '../support/docs.ts'

/*
 * deploy/observability/: the alert rules are valid and fire when they should
 * (Prometheus's own `promtool`), and the rules and the dashboard speak only of
 * metrics the app exports.
 */

const DIR = join(REPO_ROOT, 'deploy/observability')
const scratch = mkdtempSync(join(tmpdir(), 'edgeshop-observability-'))
afterAll(() => rmSync(scratch, { recursive: true, force: true }))

function promtool(...args: string[]) {
  const res = spawnSync('promtool', args, { cwd: DIR, encoding: 'utf8' })
  if (res.error) throw new Error(`promtool could not run (the Debian package prometheus provides it): ${res.error.message}`)
  return { status: res.status, output: `${res.stdout}${res.stderr}` }
}

/** Every metric name the app registers: the `edgeshop_…` string literals of src/. */
function exportedMetrics(): Set<string> {
  const names = new Set<string>()
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith('.ts')) for (const m of readFileSync(path, 'utf8').matchAll(/'(edgeshop_[a-z0-9_]+)'/g)) names.add(m[1]!)
    }
  }
  walk(join(REPO_ROOT, 'src'))
  return names
}

const exported = exportedMetrics()
/** The metrics an expression reads, a histogram's `_bucket`, `_sum` and `_count` series named by the histogram. */
const metricsIn = (expr: string) =>
  [...expr.matchAll(/\b(edgeshop_[a-z0-9_]+)/g)].map(([, name]) =>
    exported.has(name!) ? name! : name!.replace(/_(bucket|sum|count)$/, ''),
  )

interface Panel {
  id: number
  type: string
  title: string
  targets?: { expr: string; refId: string }[]
}
const dashboard = JSON.parse(readFileSync(join(DIR, 'grafana-dashboard.json'), 'utf8')) as { uid: string; panels: Panel[] }
const queries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })))
const alerts = readFileSync(join(DIR, 'alerts.yml'), 'utf8')

/** Exported but deliberately not on the dashboard (detail for a query, not a panel). */
const NOT_ON_THE_DASHBOARD = [
  'edgeshop_cache_l1_entries',
  'edgeshop_db_queries_total',
  'edgeshop_job_deliveries_running',
  'edgeshop_qstash_publishes_deferred_total',
]

describe('deploy/observability', () => {
  it('the alert rules pass `promtool check rules`', () => {
    const res = promtool('check', 'rules', 'alerts.yml')
    expect(res.output).toContain('SUCCESS')
    expect(res.status).toBe(0)
  })

  it('every alert fires on its series and stays quiet on a healthy service (`promtool test rules`)', () => {
    const res = promtool('test', 'rules', 'alerts.test.yml')
    expect(res.output).toContain('SUCCESS')
    expect(res.status).toBe(0)
    const tested = new Set([...readFileSync(join(DIR, 'alerts.test.yml'), 'utf8').matchAll(/alertname: (\w+)/g)].map((m) => m[1]))
    const defined = [...alerts.matchAll(/- alert: (\w+)/g)].map((m) => m[1])
    expect(defined.filter((a) => !tested.has(a))).toEqual([])
  })

  it("every query of the dashboard is PromQL that Prometheus parses, with Grafana's variables filled in", () => {
    expect(queries.length).toBeGreaterThan(15)
    const rules = {
      groups: [
        {
          name: 'dashboard',
          rules: queries.map((q, i) => ({
            record: `dashboard:query_${i}`,
            expr: q.expr.replaceAll('$__rate_interval', '5m').replaceAll('$instance', '.*'),
          })),
        },
      ],
    }
    writeFileSync(join(scratch, 'dashboard-rules.yml'), stringify(rules))
    const res = promtool('check', 'rules', join(scratch, 'dashboard-rules.yml'))
    expect(res.output).toContain(`SUCCESS: ${queries.length} rules found`)
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length)
  })

  it('the rules and the dashboard read only metrics the app exports, and the dashboard shows every one not listed as left out', () => {
    const read = new Set([...queries.flatMap((q) => metricsIn(q.expr)), ...metricsIn(alerts)])
    expect([...read].filter((m) => !exported.has(m))).toEqual([])
    const shown = new Set(queries.flatMap((q) => metricsIn(q.expr)))
    expect([...exported].filter((m) => !shown.has(m) && !NOT_ON_THE_DASHBOARD.includes(m))).toEqual([])
    expect(NOT_ON_THE_DASHBOARD.filter((m) => !exported.has(m) || shown.has(m))).toEqual([])
  })
})
