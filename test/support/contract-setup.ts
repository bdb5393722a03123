import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { type AppServer, startAppServer } from './app-server.ts'
import { acquireServices } from './services.ts'

/*
 * Global setup of one contract project (`contract:<target>`): starts
 * edgeshop the way that target runs in production and hands its base URL to
 * the black-box suite through `inject('baseUrl')`.
 *
 *   embedded  bun, nothing configured: PGlite in a fresh DATA_DIR (the README's first command)
 *   bun       bun with PostgreSQL
 *   node      node with PostgreSQL
 *   workerd   wrangler dev (workerd) with PostgreSQL through local Hyperdrive
 */

export const CONTRACT_JWT_SECRET = 'contract-suite-secret-0123456789abcdef'

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string
    target: string
  }
}

export default async function setup(project: TestProject) {
  const target = project.name.replace(/^contract:/, '')
  const started = Date.now()
  let server: AppServer
  let cleanup: () => Promise<void>

  if (target === 'embedded') {
    const dataDir = mkdtempSync(join(tmpdir(), 'edgeshop-embedded-'))
    server = await startAppServer('bun', { DATA_DIR: dataDir, LOG_LEVEL: 'warn' })
    cleanup = async () => rmSync(dataDir, { recursive: true, force: true })
  } else {
    const services = await acquireServices()
    const url = await services.migratedDatabase(`contract_${target}`)
    const env = { NODE_ENV: 'production', DATABASE_URL: url, JWT_SECRET: CONTRACT_JWT_SECRET, LOG_LEVEL: 'warn' }
    try {
      server = await startAppServer(target === 'workerd' ? 'workerd' : (target as 'bun' | 'node'), env)
    } catch (err) {
      await services.release()
      throw err
    }
    cleanup = () => services.release()
  }

  project.provide('baseUrl', server.url)
  project.provide('target', target)
  console.log(`[contract:${target}] ${server.runtime} ready at ${server.url} in ${Date.now() - started} ms`)

  return async () => {
    const code = await server.stop()
    if (code !== 0 && code !== null && target !== 'workerd') console.warn(`[contract:${target}] exited with ${code}:\n${server.output()}`)
    await cleanup()
  }
}
