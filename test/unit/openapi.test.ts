import { Validator } from '@seriousme/openapi-schema-validator'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ensureAdmin } from '../../src/features/accounts/service.ts'
import { drainDueJobs } from '../../src/infra/jobs/jobs.ts'
import { createSchemaValidator } from '../support/schema-validator.ts'
import { createTestApp, type TestApp } from '../support/test-app.ts'

/* The OpenAPI document: every route is in it, it is valid OpenAPI 3.1, and it says what the server does. */

type Json = Record<string, unknown>
interface Parameter {
  name: string
  in: string
  required?: boolean
  schema: Json
  example?: unknown
}
interface Operation {
  operationId?: string
  security?: Json[]
  parameters?: Parameter[]
  requestBody?: { content: Record<string, { schema: Json; example?: unknown }> }
  responses: Record<string, { content?: Record<string, { schema?: Json; example?: unknown }> }>
}
interface Document {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json> }
}

/** What the walk-through's admin is made from (the login example's credentials). */
const ADMIN = { ADMIN_EMAIL: 'admin@example.com', ADMIN_PASSWORD: 'the ADMIN_PASSWORD value' }

let t: TestApp
let doc: Document
beforeAll(async () => {
  t = await createTestApp({ env: ADMIN })
  doc = (await (await t.app.request('/openapi.json')).json()) as Document
})
afterAll(() => t?.close())

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ id: `${method} ${path}`, path, op })))

/** Every subschema of `schema`, with where it is, `$ref`s followed. */
function subschemas(schema: Json, at: string, out: [Json, string][] = [], depth = 0): [Json, string][] {
  if (depth > 20) return out
  const s = typeof schema.$ref === 'string' ? doc.components.schemas[schema.$ref.replace('#/components/schemas/', '')]! : schema
  out.push([s, at])
  for (const [name, prop] of Object.entries((s.properties ?? {}) as Record<string, Json>)) subschemas(prop, `${at}.${name}`, out, depth + 1)
  if (s.items) subschemas(s.items as Json, `${at}[]`, out, depth + 1)
  for (const k of ['anyOf', 'oneOf', 'allOf']) for (const alt of (s[k] ?? []) as Json[]) subschemas(alt, at, out, depth + 1)
  return out
}

describe('OpenAPI document', () => {
  it('documents every route the app serves, with its error answers as problem details', async () => {
    expect(doc.openapi).toBe('3.1.0')
    const served = new Set(
      t.app.routes
        // The document and its page; the GraphQL API is described by its SDL (GET /graphql/schema.graphql).
        .filter((r) => r.method !== 'ALL' && !['/openapi.json', '/docs', '/graphql', '/graphql/schema.graphql'].includes(r.path))
        .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:([^/]+)/g, '{$1}')}`),
    )
    const documented = new Set(operations().map((o) => o.id))
    expect([...served].sort()).toEqual([...documented].sort())
    for (const { path, op, id } of operations()) {
      for (const [status, res] of Object.entries(op.responses)) {
        // /readyz answers 503 with its readiness body, as API.md says; every other error is problem details.
        if (path === '/readyz' && status === '503') continue
        if (Number(status) >= 400) expect(Object.keys(res.content ?? {}), `${id} ${status}`).toEqual(['application/problem+json'])
      }
    }
    for (const admin of ['post /v1/products', 'patch /v1/products/{id}', 'delete /v1/products/{id}', 'get /v1/me']) {
      const [m, p] = admin.split(' ') as [string, string]
      expect(doc.paths[p]?.[m]?.security, admin).toEqual([{ bearerAuth: [] }])
    }
  })

  it('is valid OpenAPI 3.1 to an independent validator, which does find a broken document', async () => {
    const validator = new Validator()
    const result = await validator.validate(structuredClone(doc) as unknown as Record<string, unknown>)
    expect(result.errors).toBeUndefined()
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')
    const broken = structuredClone(doc) as unknown as { paths: Record<string, Record<string, Json>> }
    broken.paths['/healthz']!.get!.responses = 'none'
    expect((await new Validator().validate(broken)).valid).toBe(false)
  })

  it('every schema is sound JSON Schema 2020-12 to Ajv in strict mode, and every example matches its schema', () => {
    const v = createSchemaValidator(doc)
    let schemas = 0
    let examples = 0
    const check = (schema: Json | undefined, example: unknown, at: string) => {
      if (!schema) return
      schemas++
      // Compiling is the soundness check: strict mode throws on an unknown keyword or a pattern that is not a `u` regex.
      v.errors(schema, null)
      for (const [sub, where] of subschemas(schema, at)) {
        if (sub.example === undefined) continue
        expect(v.errors(sub, sub.example), `${where} example`).toEqual([])
        examples++
      }
      if (example === undefined) return
      expect(v.errors(schema, example), `${at} example`).toEqual([])
      examples++
    }
    for (const [name, schema] of Object.entries(doc.components.schemas)) check(schema, undefined, name)
    for (const { id, op } of operations()) {
      for (const p of op.parameters ?? []) check(p.schema, p.example, `${id} ${p.in} ${p.name}`)
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) check(media.schema, media.example, `${id} body ${type}`)
      for (const [status, res] of Object.entries(op.responses))
        for (const [type, media] of Object.entries(res.content ?? {})) check(media.schema, media.example, `${id} ${status} ${type}`)
    }
    expect(schemas).toBeGreaterThanOrEqual(80)
    // The walk-through: signup, login, create product, checkout and pay, each with a request and an answer.
    expect(examples).toBeGreaterThanOrEqual(10)
  })

  it('names every operation once, and says who may call each: no one in particular, a bearer, QStash, or the metrics token if set', () => {
    const ids = operations().map(({ op }) => op.operationId)
    expect(
      ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z]+$/.test(id)),
      JSON.stringify(ids),
    ).toBe(true)
    expect(new Set(ids).size).toBe(ids.length)
    const open = operations()
      .filter(({ op }) => Array.isArray(op.security) && op.security.length === 0)
      .map((o) => o.id)
      .sort()
    expect(open).toEqual(
      [
        'get /healthz',
        'get /readyz',
        'get /v1/products',
        'get /v1/products/{id}',
        'post /v1/auth/login',
        'post /v1/auth/logout',
        'post /v1/auth/refresh',
        'post /v1/auth/signup',
      ].sort(),
    )
    for (const { id, op } of operations()) expect(Array.isArray(op.security), `${id} declares its security`).toBe(true)
    expect(doc.paths['/metrics']!.get!.security).toEqual([{ metricsToken: [] }, {}])
    for (const { path, op } of operations().filter((o) => o.path.startsWith('/internal/')))
      expect(op.security, path).toEqual([{ upstashSignature: [] }])
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(['bearerAuth', 'metricsToken', 'upstashSignature'])
  })

  it('declares Idempotency-Key as the server requires it, the list cursors as non-empty, and PATCH /v1/products/{id} as needing a field', () => {
    for (const path of ['/v1/orders', '/v1/orders/{id}/pay']) {
      const key = doc.paths[path]!.post!.parameters!.find((p) => p.name === 'idempotency-key')!
      expect(key).toMatchObject({ in: 'header', required: true, schema: { type: 'string', minLength: 1, maxLength: 255 } })
      const pattern = new RegExp(key.schema.pattern as string, 'u')
      expect(['k', '~!#', 'a'.repeat(255)].every((k) => pattern.test(k))).toBe(true)
      expect(['a b', 'clé', '\t'].some((k) => pattern.test(k))).toBe(false)
    }
    const cursors = operations().flatMap(({ op }) => (op.parameters ?? []).filter((p) => p.name === 'cursor'))
    expect(cursors.length).toBe(4)
    for (const c of cursors) expect(c.schema.minLength as number).toBeGreaterThanOrEqual(1)
    expect(doc.components.schemas.UpdateProduct!.minProperties).toBe(1)
  })

  it('every string a client sends declares a pattern that refuses U+0000 and unpaired surrogates, read with or without the u flag', () => {
    const bad = ['\u0000', 'a\u0000b', '\ud800', 'x\udfff', '\udbff', '\udc00\ud800', '😀\ud800']
    const strings: [Json, string][] = []
    for (const { id, op } of operations()) {
      for (const [, media] of Object.entries(op.requestBody?.content ?? {}))
        strings.push(...subschemas(media.schema, `${id} body`).filter(([s]) => s.type === 'string'))
      for (const p of op.parameters ?? []) {
        // A path id that is not a UUID is simply unknown: 404, as the parameter says.
        if (p.in === 'path' && p.schema.format === 'uuid') continue
        if (p.schema.type === 'string' && !p.schema.enum) strings.push([p.schema, `${id} ${p.in} ${p.name}`])
      }
    }
    // The job delivery's body is read raw (its signature covers the bytes), and is not a zod schema.
    const checked = strings.filter(([, at]) => !at.startsWith('post /internal/jobs/{name} body'))
    for (const [s, at] of checked) {
      expect(s.pattern, `${at} declares a pattern`).toEqual(expect.any(String))
      for (const flags of ['', 'u']) {
        const re = new RegExp(s.pattern as string, flags)
        for (const value of bad) expect(re.test(value), `${at} /${flags} accepts ${JSON.stringify(value)}`).toBe(false)
      }
      // Where the field takes free text, a character outside the BMP is one character like any other.
      if (new RegExp(s.pattern as string).test('free text')) expect(new RegExp(s.pattern as string).test('free 😀 text'), at).toBe(true)
    }
    expect(checked.length).toBeGreaterThanOrEqual(25)
  })

  it('the walk-through its examples tell works as told, and /docs shows it', async () => {
    const { services } = t
    await ensureAdmin(services.accounts(services.scope()), { email: ADMIN.ADMIN_EMAIL, password: ADMIN.ADMIN_PASSWORD })
    // What the server makes up (ids, times, tokens) differs from the example; everything else is as shown.
    const MADE = new Set(['id', 'createdAt', 'updatedAt', 'expiresAt', 'accessToken', 'refreshToken', 'productId'])
    const asShown = (actual: unknown, shown: unknown, at: string): void => {
      if (shown !== null && typeof shown === 'object') {
        expect(Object.keys(actual as object).sort(), at).toEqual(Object.keys(shown).sort())
        for (const [k, v] of Object.entries(shown)) {
          const a = (actual as Json)[k]
          if (MADE.has(k)) expect(typeof a, `${at}.${k}`).toBe(typeof v)
          else asShown(a, v, `${at}.${k}`)
        }
      } else expect(actual, at).toEqual(shown)
    }
    /** Sends the example body of `POST path` (or `body`, made from it) and checks the answer against the example answer of `status`. */
    const step = async (path: string, status: number, o: { url?: string; token?: string; body?: (shown: Json) => Json } = {}) => {
      const op = doc.paths[path]!.post!
      const shown = op.requestBody!.content['application/json']!.example as Json
      const answer = op.responses[status]!.content!['application/json']!.example as Json
      const idempotent = (op.parameters ?? []).some((p) => p.name === 'idempotency-key')
      const res = await t.app.request(o.url ?? path, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          ...(o.token ? { Authorization: `Bearer ${o.token}` } : {}),
          ...(idempotent ? { 'Idempotency-Key': crypto.randomUUID() } : {}),
        },
        body: JSON.stringify(o.body ? o.body(shown) : shown),
      })
      const json = (await res.json()) as Json
      expect(res.status, `${path}: ${JSON.stringify(json)}`).toBe(status)
      asShown(json, answer, path)
      return { shown, answer, json }
    }

    const login = await step('/v1/auth/login', 200)
    const create = await step('/v1/products', 201, { token: login.json.accessToken as string })
    const signup = await step('/v1/auth/signup', 201)
    const token = signup.json.accessToken as string
    const checkout = await step('/v1/orders', 201, {
      token,
      body: (shown) => ({ items: (shown.items as Json[]).map((line) => ({ ...line, productId: create.json.id })) }),
    })
    const order = checkout.json
    const pay = await step('/v1/orders/{id}/pay', 202, { token, url: `/v1/orders/${order.id}/pay` })

    const runtime = services.jobs(services.scope())
    await expect
      .poll(async () => {
        await drainDueJobs(runtime, 10)
        const res = await t.app.request(`/v1/orders/${order.id}`, { headers: { Authorization: `Bearer ${token}` } })
        return ((await res.json()) as Json).status
      })
      .toBe('paid')

    const page = await (await t.app.request('/docs')).text()
    for (const shown of [login.shown, create.shown, signup.shown, checkout.shown, pay.shown, pay.answer]) {
      const pre = JSON.stringify(shown, null, 2).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
      expect(page).toContain(pre)
    }
    expect(page).toContain('The first five minutes')
  })
})
