/**
 * `./run dev:worker`: the Worker in workerd (`wrangler dev`) on
 * http://127.0.0.1:8787, against the PostgreSQL of `./run db:local` (wrangler.toml's
 * Hyperdrive `localConnectionString`). Its settings come from `.dev.vars`,
 * copied from `.dev.vars.example` when missing (development values: edit the
 * copy, which git ignores). Other arguments go to `wrangler dev`
 * (`./run dev:worker --port 8788`).
 */
import { spawn } from 'node:child_process'
import { copyFileSync, existsSync } from 'node:fs'
import { resolve } from 'node:path'

const root = resolve(import.meta.dirname, '..')
const say = (msg: string) => process.stderr.write(`[dev:worker] ${msg}\n`)

if (!existsSync(resolve(root, '.dev.vars'))) {
  copyFileSync(resolve(root, '.dev.vars.example'), resolve(root, '.dev.vars'))
  say('created .dev.vars from .dev.vars.example (development settings; edit it as you like, git ignores it)')
}

// wrangler's own binary, not npx: stopping npx would leave wrangler and workerd running.
const wrangler = spawn(resolve(root, 'node_modules/.bin/wrangler'), ['dev', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  // No usage metrics, and no fetch of Cloudflare's `request.cf` sample (the app reads none of it; offline it only logs ENOTFOUND).
  env: { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false', ...process.env },
})
// Ctrl-C reaches wrangler too (same process group); a SIGTERM sent to this process alone is passed on.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => wrangler.kill(signal))
wrangler.once('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
