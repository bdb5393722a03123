import { describe, expect, it } from 'vitest'
import { createTestApp } from '../support/test-app.ts'

/* Every route is documented: the OpenAPI document is generated from the same definitions the app serves. */

describe('OpenAPI document', () => {
  it('documents every route the app serves, with its error answers as problem details', async () => {
    const t = await createTestApp()
    const doc = (await (await t.app.request('/openapi.json')).json()) as {
      openapi: string
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }>; security?: unknown[] }>>
    }
    expect(doc.openapi).toBe('3.1.0')
    const served = new Set(
      t.app.routes
        .filter((r) => r.method !== 'ALL' && !['/openapi.json', '/docs'].includes(r.path))
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([^/]+)/g, '{$1}')}`),
    )
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`)))
    expect([...served].sort()).toEqual([...documented].sort())
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, res] of Object.entries(op.responses)) {
          // /readyz answers 503 with its readiness body, as API.md says; every other error is problem details.
          if (path === '/readyz' && status === '503') continue
          if (Number(status) >= 400)
            expect(Object.keys(res.content ?? {}), `${method} ${path} ${status}`).toEqual(['application/problem+json'])
        }
      }
    }
    for (const admin of ['post /v1/products', 'patch /v1/products/{id}', 'delete /v1/products/{id}', 'get /v1/me']) {
      const [m, p] = admin.split(' ') as [string, string]
      expect(doc.paths[p]?.[m]?.security, admin).toEqual([{ bearerAuth: [] }])
    }
    await t.close()
  })
})
