/**
 * Time of one login on each runtime: `./run node bench/login.ts [rounds]`.
 *
 * Starts PostgreSQL and each target as the contract suite does, signs up one
 * user, then times sequential logins (one at a time, so this is the latency
 * of a single login, dominated by the password hash, not throughput).
 * Prints a table and the hash parameters each runtime uses.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startAppServer } from '../test/support/app-server.ts'
import { startPostgres } from '../test/support/postgres.ts'
import { createMigratedDatabase } from '../test/support/services.ts'

const rounds = Number(process.argv[2] ?? 30)
const secret = 'bench-login-secret-0123456789abcdef0123'
const pg = await startPostgres()
const dataDir = mkdtempSync(join(tmpdir(), 'bench-login-'))
const rows: string[] = []

const targets: { name: string; runtime: 'bun' | 'node' | 'workerd'; env: Record<string, string> }[] = [
  { name: 'bun (embedded PGlite)', runtime: 'bun', env: { DATA_DIR: dataDir } },
  { name: 'bun (PostgreSQL)', runtime: 'bun', env: { DATABASE_URL: await createMigratedDatabase(pg, 'bench_bun') } },
  { name: 'node (PostgreSQL)', runtime: 'node', env: { DATABASE_URL: await createMigratedDatabase(pg, 'bench_node') } },
  { name: 'workerd (PostgreSQL)', runtime: 'workerd', env: { DATABASE_URL: await createMigratedDatabase(pg, 'bench_workerd') } },
]

for (const t of targets) {
  const server = await startAppServer(t.runtime, { ...t.env, JWT_SECRET: secret, LOG_LEVEL: 'warn', RATE_LIMIT_AUTH: '100000/60' })
  try {
    const body = JSON.stringify({ email: 'bench@example.test', password: 'a benchmark password' })
    const post = (path: string, data: string) =>
      fetch(`${server.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: data })
    await post('/v1/auth/signup', JSON.stringify({ email: 'bench@example.test', password: 'a benchmark password', name: 'Bench' }))
    for (let i = 0; i < 3; i++) await post('/v1/auth/login', body)
    const times: number[] = []
    for (let i = 0; i < rounds; i++) {
      const started = performance.now()
      const res = await post('/v1/auth/login', body)
      await res.arrayBuffer()
      if (res.status !== 200) throw new Error(`${t.name}: login answered ${res.status}`)
      times.push(performance.now() - started)
    }
    times.sort((a, b) => a - b)
    const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(1)
    const hash = t.runtime === 'workerd' ? 'PBKDF2-SHA256, 100,000 iterations' : 'argon2id m=19 MiB t=2 p=1'
    rows.push(`| ${t.name} | ${hash} | ${at(0.5)} | ${at(0.9)} | ${at(0)} |`)
  } finally {
    await server.stop()
  }
}
await pg.stop()
rmSync(dataDir, { recursive: true, force: true })

console.log(`\nOne login, ${rounds} sequential rounds (ms):\n`)
console.log('| target | password hash | median | p90 | min |\n|---|---|---|---|---|')
for (const r of rows) console.log(r)
