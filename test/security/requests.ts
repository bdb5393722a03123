import fc from 'fast-check'
import { expect } from 'vitest'
import { ERROR_CODES } from '../../src/core/errors.ts'
import { API_HEADERS } from '../../src/http/security.ts'
import type { SessionBody } from '../contract/helpers.ts'
import { type Harness, PASSWORD, unique } from './harness.ts'
import {
  fill,
  type JsonSchema,
  loadDocument,
  type OpenApiDocument,
  type Operation,
  operations,
  paramsIn,
  resolve,
} from './openapi-model.ts'

/*
 * Requests built from the OpenAPI document, and the checks every answer of
 * every sweep must pass.
 */

/** Real objects for the ids a route takes, so a request reaches the route's logic rather than its 404. */
export interface Fixtures {
  productId: string
  orderId: string
  jobId: string
  jobName: string
  refreshToken: string
}

/**
 * What a sweep starts from: the served OpenAPI document and its operations,
 * one order of `owner` for `productId`, and the ids the routes take.
 */
export async function sweepSetup(h: Harness, owner: SessionBody, productId: string, quantity = 1) {
  const doc = await loadDocument((path) => h.call('GET', path))
  const order = await h.order(owner, [{ productId, quantity }])
  const [job] = await h.sql<{ id: string }[]>`select id from jobs order by id limit 1`
  const fx: Fixtures = { productId, orderId: order.id, jobId: job!.id, jobName: 'payment.capture', refreshToken: owner.refreshToken }
  return { doc, ops: operations(doc), order, fx }
}

export interface RequestSpec {
  method: string
  path: string
  headers: Record<string, string>
  body?: string | undefined
}

/** Which fixture a `{id}` stands for, by the collection it sits in. A new kind of id must be added here, or every sweep fails on it. */
export function idFixture(op: Operation, fx: Fixtures): string {
  if (op.path.startsWith('/v1/orders/')) return fx.orderId
  if (op.path.startsWith('/v1/products/')) return fx.productId
  if (op.path.startsWith('/v1/admin/jobs/')) return fx.jobId
  throw new Error(`no fixture for {id} in ${op.id}: add its collection to idFixture()`)
}

/** The path with plausible values: fixtures for ids, the first of an enum, a real job name. */
export function examplePath(op: Operation, fx: Fixtures, ids: Record<string, string> = {}): string {
  const values: Record<string, string> = {}
  for (const p of paramsIn(op, 'path')) {
    const given = ids[p.name]
    if (given !== undefined) values[p.name] = given
    else if (p.name === 'id') values.id = idFixture(op, fx)
    else if (p.schema.enum) values[p.name] = String(p.schema.enum[0])
    else if (p.name === 'name') values.name = fx.jobName
    else throw new Error(`no example for {${p.name}} in ${op.id}`)
  }
  return fill(op.path, values)
}

/** A value that satisfies `schema`, made plainly (the fuzzer makes the rest). */
export function exampleValue(doc: OpenApiDocument, schema: JsonSchema, name: string, fx: Fixtures): unknown {
  const s = resolve(doc, schema)
  if (s.enum) return s.enum[0]
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {}
      for (const [key, prop] of Object.entries(s.properties ?? {})) out[key] = exampleValue(doc, prop, key, fx)
      return out
    }
    case 'array':
      return Array.from({ length: Math.max(1, s.minItems ?? 1) }, () => exampleValue(doc, s.items ?? {}, name, fx))
    case 'integer':
    case 'number':
      return Math.max(s.minimum ?? 0, Math.min(1, s.maximum ?? 1))
    case 'boolean':
      return true
    default:
      return exampleString(s, name, fx)
  }
}

function exampleString(s: JsonSchema, name: string, fx: Fixtures): string {
  if (name === 'email') return `sweep.${unique()}@example.test`
  if (name === 'password') return PASSWORD
  if (name === 'paymentToken') return 'tok_ok'
  if (name === 'refreshToken') return fx.refreshToken
  if (name === 'sku') return `SWEEP-${unique()}`
  if (s.format === 'uuid') return fx.productId
  if (s.format === 'date-time') return new Date().toISOString()
  const plain = 'x'.repeat(Math.max(1, s.minLength ?? 1))
  if (s.pattern && !new RegExp(s.pattern).test(plain)) {
    const re = new RegExp(s.pattern)
    const [sample] = fc.sample(
      fc.stringMatching(re).filter((v) => v.length >= (s.minLength ?? 0) && v.length <= (s.maxLength ?? 64)),
      { seed: 1, numRuns: 1 },
    )
    return sample!
  }
  return plain
}

/** A request that should get past validation to the route's logic. */
export function exampleRequest(doc: OpenApiDocument, op: Operation, fx: Fixtures, ids: Record<string, string> = {}): RequestSpec {
  const headers: Record<string, string> = {}
  if (paramsIn(op, 'header').some((p) => p.name === 'idempotency-key')) headers['Idempotency-Key'] = `sweep-${unique()}`
  let body: string | undefined
  if (op.body) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(exampleValue(doc, op.body, 'body', fx))
  }
  return { method: op.method, path: examplePath(op, fx, ids), headers, body }
}

/** What no answer may show: stack frames, source paths, driver or SQL messages, connection strings. */
export const LEAK =
  /\bat [\w.<>]+ \(.+:\d+:\d+\)|node_modules\/|\/src\/[\w/-]+\.ts|postgres(ql)?:\/\/|PostgresError|Failed query|SQLSTATE|syntax error at or near|violates [\w-]+ constraint|invalid input syntax|duplicate key value|ECONNREFUSED|ECONNRESET|relation "/

export interface Answer {
  status: number
  text: string
  /** The parsed JSON body, when it is JSON. */
  json: unknown
}

/**
 * The body of an answer; of an event stream (which does not end by itself),
 * what came before its first blank line, and the client hangs up.
 */
export async function answerText(res: Response): Promise<string> {
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream') || !res.body) return res.text()
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let text = ''
  while (!text.includes('\n\n')) {
    const { done, value } = await reader.read()
    if (done) break
    text += value
  }
  await reader.cancel()
  return text
}

/**
 * Checks what every answer owes (API.md § Conventions): a request id, the
 * security headers, no leaked internals, and problem details for every
 * error (but those the operation documents otherwise, `/readyz`'s 503).
 * Returns the answer's body for further checks.
 */
export async function expectSafeAnswer(res: Response, label: string, op?: Pick<Operation, 'plainErrors'>): Promise<Answer> {
  const text = await answerText(res)
  const requestId = res.headers.get('x-request-id')
  expect(requestId, `${label}: X-Request-Id`).toBeTruthy()
  for (const [name, value] of Object.entries(API_HEADERS)) {
    if (name === 'Content-Security-Policy') expect(res.headers.get(name), `${label}: ${name}`).toBeTruthy()
    else expect(res.headers.get(name), `${label}: ${name}`).toBe(value)
  }
  expect(res.headers.get('x-powered-by'), `${label}: X-Powered-By`).toBeNull()
  expect(text, `${label}: leaks internals`).not.toMatch(LEAK)
  let json: unknown
  const type = res.headers.get('content-type') ?? ''
  if (/json/.test(type) && text !== '') json = JSON.parse(text)
  if (res.status >= 400 && !op?.plainErrors.includes(res.status)) {
    expect(type, `${label}: ${res.status} ${text}`).toMatch(/^application\/problem\+json/)
    const problem = json as { type: string; title: string; status: number; code: keyof typeof ERROR_CODES; requestId: string }
    expect(Object.keys(ERROR_CODES), `${label}: code`).toContain(problem.code)
    expect(problem.status, `${label}: status in body`).toBe(res.status)
    expect(ERROR_CODES[problem.code].status, `${label}: status of ${problem.code}`).toBe(res.status)
    expect(problem.type).toBe(`/docs#error-${problem.code}`)
    expect(typeof problem.title).toBe('string')
    expect(problem.requestId, `${label}: requestId`).toBe(requestId)
  }
  return { status: res.status, text, json }
}

/** A problem answer with this status and code (after {@link expectSafeAnswer}). */
export async function expectCode(res: Response, status: number, code: string, label: string): Promise<Answer> {
  const answer = await expectSafeAnswer(res, label)
  expect(answer.status, `${label}: ${answer.text}`).toBe(status)
  expect((answer.json as { code: string }).code, label).toBe(code)
  return answer
}

/**
 * The places where `value` departs from the documented `schema`: wrong
 * types, missing required fields, values outside an enum — and properties
 * the document does not declare (excessive data exposure, API3).
 */
export function schemaViolations(doc: OpenApiDocument, schema: JsonSchema, value: unknown, at = 'body', depth = 0): string[] {
  if (depth > 30) return []
  const s = resolve(doc, schema)
  const alternatives = s.anyOf ?? s.oneOf
  if (alternatives) {
    const each = alternatives.map((alt) => schemaViolations(doc, alt, value, at, depth + 1))
    return each.some((v) => v.length === 0) ? [] : [`${at}: matches none of its alternatives (${each.flat().join('; ')})`]
  }
  const types = s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type]
  if (value === null) return types.includes('null') || s.nullable ? [] : [`${at}: null`]
  if (s.enum && !s.enum.includes(value)) return [`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(s.enum)}`]
  const type = types.find((t) => t !== 'null')
  const actual = Array.isArray(value) ? 'array' : typeof value
  switch (type) {
    case 'object': {
      if (actual !== 'object') return [`${at}: ${actual}, not an object`]
      const obj = value as Record<string, unknown>
      const out: string[] = []
      for (const key of s.required ?? []) if (!(key in obj)) out.push(`${at}.${key}: missing`)
      for (const [key, v] of Object.entries(obj)) {
        const prop = s.properties?.[key]
        if (prop) out.push(...schemaViolations(doc, prop, v, `${at}.${key}`, depth + 1))
        else if (s.additionalProperties === undefined || s.additionalProperties === false) out.push(`${at}.${key}: not documented`)
      }
      return out
    }
    case 'array':
      if (!Array.isArray(value)) return [`${at}: ${actual}, not an array`]
      return value.flatMap((item, i) => schemaViolations(doc, s.items ?? {}, item, `${at}.${i}`, depth + 1))
    case 'integer':
      return Number.isInteger(value) ? [] : [`${at}: ${JSON.stringify(value)} is not an integer`]
    case 'number':
      return typeof value === 'number' ? [] : [`${at}: ${actual}, not a number`]
    case 'boolean':
      return typeof value === 'boolean' ? [] : [`${at}: ${actual}, not a boolean`]
    case 'string': {
      if (typeof value !== 'string') return [`${at}: ${actual}, not a string`]
      if (s.format === 'uuid' && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(value))
        return [`${at}: ${value} is not a lower-case uuid`]
      if (s.format === 'date-time' && new Date(value).toISOString() !== value) return [`${at}: ${value} is not an ISO timestamp`]
      return []
    }
    default:
      return []
  }
}
