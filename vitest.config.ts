import { defineConfig } from 'vitest/config'

/*
 * One command runs everything (`bun run test`):
 *   unit          app.request() and pure functions; PGlite in memory where a database is needed
 *   integration   real PostgreSQL (and Redis) started for the run
 *   contract:*    the black-box HTTP suite, unchanged, against every target:
 *                 embedded (Bun + PGlite), bun, node and workerd (each with PostgreSQL)
 *   security      the OWASP API Top 10 sweeps and the OpenAPI-driven fuzzer (docs/SECURITY.md),
 *                 on real PostgreSQL and Redis, in-process and against Bun and Node servers
 */
const targets = ['embedded', 'bun', 'node', 'workerd'] as const

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    maxWorkers: 4,
    reporters: ['default', './test/support/target-summary.ts'],
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], globalSetup: ['test/support/unit-setup.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/support/unit-setup.ts', 'test/support/integration-setup.ts'],
        },
      },
      {
        extends: true,
        test: { name: 'security', include: ['test/security/**/*.test.ts'], globalSetup: ['test/support/integration-setup.ts'] },
      },
      ...targets.map((target) => ({
        extends: true,
        test: { name: `contract:${target}`, include: ['test/contract/**/*.test.ts'], globalSetup: ['test/support/contract-setup.ts'] },
      })),
    ],
  },
})
