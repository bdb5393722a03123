import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionBody } from '../contract/helpers.ts'
import { createHarness, type Harness, type ProductBody } from './harness.ts'
import { type JsonSchema, type OpenApiDocument, type Operation, paramsIn, resolve } from './openapi-model.ts'
import { examplePath, exampleRequest, exampleValue, expectSafeAnswer, type Fixtures, sweepSetup } from './requests.ts'

/*
 * SQL injection (OWASP API8, security misconfiguration; A03 of the general
 * Top 10): every string a client controls — each string field of each body
 * at any depth, each query parameter, each path parameter — is sent each
 * payload below. Every answer must be an ordinary answer (no 5xx, nothing
 * leaked), quick (the `pg_sleep` payloads would take 5 s if they ran), and
 * afterwards the schema and the canary rows are as they were and text that
 * was stored reads back verbatim.
 */

const PAYLOADS = [
  "' OR '1'='1",
  "' OR 1=1 --",
  "'; DROP TABLE users; --",
  '"; DROP TABLE products; --',
  '1; SELECT pg_sleep(5); --',
  "' || (SELECT pg_sleep(5)) || '",
  "') OR ('a'='a",
  "admin'--",
  "%' AND 1=1 AND '%'='",
  "\\'; TRUNCATE orders CASCADE; --",
  '$$; DROP TABLE jobs; $$',
  '1 UNION SELECT password_hash, email FROM users --',
  "'::text; UPDATE users SET role='admin' --",
]

let h: Harness
let doc: OpenApiDocument
let ops: Operation[]
let buyer: SessionBody
let target: ProductBody
let canary: ProductBody
let fx: Fixtures

beforeAll(async () => {
  h = await createHarness({ tag: 'sqli', redis: false })
  buyer = await h.customer('buyer')
  target = await h.product({ stock: 1000 })
  canary = await h.product({ stock: 7, priceCents: 777, name: 'Canary' })
  ;({ doc, ops, fx } = await sweepSetup(h, buyer, target.id))
})
afterAll(() => h?.close())

const tokenFor = (op: Operation) => (op.access === 'admin' ? h.adminToken : op.access === 'customer' ? buyer.accessToken : undefined)

/** The dotted paths of every string in a body of this schema (`items.0.productId`). */
function stringPaths(schema: JsonSchema, at: string[] = []): string[][] {
  const s = resolve(doc, schema)
  if (s.type === 'string') return [at]
  if (s.type === 'array' && s.items) return stringPaths(s.items, [...at, '0'])
  if (s.type === 'object') return Object.entries(s.properties ?? {}).flatMap(([k, v]) => stringPaths(v, [...at, k]))
  return []
}

function setAt(body: unknown, at: string[], value: string): unknown {
  const copy = structuredClone(body) as Record<string, unknown>
  let node: Record<string, unknown> = copy
  for (const key of at.slice(0, -1)) node = node[key] as Record<string, unknown>
  node[at.at(-1)!] = value
  return copy
}

const schemaState = async () => ({
  tables: await h.sql`select table_name from information_schema.tables where table_schema = 'public' order by 1`,
  admins: await h.sql`select email from users where role = 'admin'`,
  canary: await h.sql`select name, stock, price_cents, active, version from products where id = ${canary.id}`,
})

describe('SQL injection', () => {
  // Hundreds of requests each (10 s on a quiet machine); the time allowed covers a loaded one.
  it('every string field, query parameter and path parameter takes every payload as plain text', async () => {
    const before = await schemaState()
    let requests = 0
    let slowest = 0
    for (const op of ops) {
      const locations: { label: string; build: (payload: string) => { path: string; body?: string; headers: Record<string, string> } }[] =
        []
      if (op.body) {
        for (const at of stringPaths(op.body)) {
          locations.push({
            label: `body.${at.join('.')}`,
            build: (payload) => {
              const spec = exampleRequest(doc, op, fx)
              return { ...spec, body: JSON.stringify(setAt(exampleValue(doc, op.body!, 'body', fx), at, payload)) }
            },
          })
        }
      }
      for (const p of paramsIn(op, 'query')) {
        locations.push({
          label: `?${p.name}`,
          build: (payload) => {
            const spec = exampleRequest(doc, op, fx)
            return { ...spec, path: `${spec.path}?${p.name}=${encodeURIComponent(payload)}` }
          },
        })
      }
      for (const p of paramsIn(op, 'path')) {
        locations.push({
          label: `{${p.name}}`,
          build: (payload) => ({ ...exampleRequest(doc, op, fx), path: examplePath(op, fx, { [p.name]: payload }) }),
        })
      }
      for (const loc of locations) {
        for (const payload of PAYLOADS) {
          const spec = loc.build(payload)
          const started = performance.now()
          const res = await h.call(op.method, spec.path, { token: tokenFor(op), raw: spec.body, headers: spec.headers })
          const answer = await expectSafeAnswer(res, `${op.id} ${loc.label} = ${payload}`)
          slowest = Math.max(slowest, performance.now() - started)
          expect(answer.status, `${op.id} ${loc.label} = ${payload}: ${answer.text}`).toBeLessThan(500)
          if (op.id === 'GET /v1/products' && loc.label === '?q' && answer.status === 200) {
            // A search finds the text, not every row.
            for (const item of (answer.json as { items: { name: string; sku: string }[] }).items) {
              expect(`${item.name} ${item.sku}`.toLowerCase(), payload).toContain(payload.trim().toLowerCase())
            }
          }
          requests++
        }
      }
    }
    expect(await schemaState()).toEqual(before)
    // A payload that ran would have slept 5 s.
    expect(slowest).toBeLessThan(4000)
    expect(requests).toBeGreaterThanOrEqual(PAYLOADS.length * 30)
  }, 90_000)

  it('text that was stored reads back exactly as it was sent', async () => {
    for (const payload of PAYLOADS) {
      const p = await h.product({ name: payload, description: payload })
      const read = (await (await h.call('GET', `/v1/products/${p.id}`)).json()) as { name: string; description: string }
      expect(read).toMatchObject({ name: payload.trim(), description: payload })
      const signup = await h.call('POST', '/v1/auth/signup', {
        body: {
          email: `inj.${Date.now()}.${Math.random().toString(36).slice(2)}@example.test`,
          password: `${payload}-long-enough`,
          name: payload,
        },
      })
      expect(signup.status, payload).toBe(201)
      const session = (await signup.json()) as SessionBody
      expect(session.user.name).toBe(payload.trim())
      const login = await h.call('POST', '/v1/auth/login', { body: { email: session.user.email, password: `${payload}-long-enough` } })
      expect(login.status, payload).toBe(200)
      const wrong = await h.call('POST', '/v1/auth/login', { body: { email: session.user.email, password: payload.padEnd(10, "'") } })
      expect(wrong.status, payload).toBe(401)
    }
  }, 90_000)
})
