import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { migrate } from '../../src/runtime/migrate.ts'
import { createEmbeddedDatabase } from '../../src/runtime/pglite.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** A dump of an in-memory PGlite with every migration applied; each test file starts its own copy from it. */
    pgliteDump: string
  }
}

/** Migrates one PGlite once per run, so that each test file's database starts in a third of a second instead of seconds. */
export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'edgeshop-unit-'))
  const handle = await createEmbeddedDatabase({})
  await migrate(handle)
  const dump = await handle.client.dumpDataDir('none')
  await handle.close()
  const file = join(dir, 'pglite.tar')
  writeFileSync(file, new Uint8Array(await dump.arrayBuffer()))
  project.provide('pgliteDump', file)
  return () => rmSync(dir, { recursive: true, force: true })
}
