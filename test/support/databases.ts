import postgres from 'postgres'
import { inject } from 'vitest'
import { applyMigrations } from './services.ts'

/*
 * Databases for integration tests, on the run's shared PostgreSQL. Each test
 * file (or test) makes its own, so none sees another's rows.
 */

let n = 0

/** A new, empty database; returns its URL. */
export async function freshDatabase(tag = 'it'): Promise<string> {
  const admin = postgres(inject('postgresAdminUrl'), { max: 1, onnotice: () => {} })
  const name = `${tag}_${process.pid}_${Date.now()}_${n++}`.replace(/[^a-z0-9_]/g, '_')
  try {
    await admin.unsafe(`create database ${name}`)
  } finally {
    await admin.end()
  }
  return inject('postgresAdminUrl').replace(/\/postgres$/, `/${name}`)
}

/** A new database with every migration applied. */
export async function migratedDatabase(tag = 'it'): Promise<string> {
  const url = await freshDatabase(tag)
  await applyMigrations(url)
  return url
}
