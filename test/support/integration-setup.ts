import type { TestProject } from 'vitest/node'
import { acquireServices } from './services.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the shared PostgreSQL's `postgres` database; tests create their own databases from it. */
    postgresAdminUrl: string
    /** Port of the shared redis-server; tests put their own Upstash REST stand-in in front of it. */
    redisPort: number
  }
}

/** Starts the shared PostgreSQL for the integration project. */
export default async function setup(project: TestProject) {
  const services = await acquireServices()
  project.provide('postgresAdminUrl', services.pg.url())
  project.provide('redisPort', services.redis.port)
  return () => services.release()
}
