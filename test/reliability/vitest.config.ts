import { resolve } from 'node:path'
import { defineConfig } from 'vitest/config'

/*
 * The reliability suite (`bun run test:reliability`, docs/RELIABILITY.md):
 * load and faults against real processes, one scenario after another, in
 * one file. Not part of the default `vitest run`.
 */
export default defineConfig({
  test: {
    root: resolve(import.meta.dirname, '../..'),
    include: ['test/reliability/**/*.test.ts'],
    testTimeout: 240_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    fileParallelism: false,
    maxWorkers: 1,
  },
})
