import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SessionBody } from '../contract/helpers.ts'
import { createSchemaValidator, type SchemaValidator } from '../support/schema-validator.ts'
import { createTestApp } from '../support/test-app.ts'
import {
  type ConstraintSite,
  constraintSites,
  fieldName,
  type PartsRequest,
  type Pools,
  validPartsArbitrary,
  violationArbitrary,
} from './arbitraries.ts'
import { createHarness, type Harness, PASSWORD } from './harness.ts'
import { fill, type JsonSchema, loadDocument, type Operation, operations, paramsIn } from './openapi-model.ts'
import { expectCode, expectSafeAnswer } from './requests.ts'

/*
 * The document's request constraints hold against the server, both ways.
 * For every operation that takes a body, a query or headers (QStash's signed
 * routes aside: their signature is checked before anything else):
 * - requests drawn from the schemas — which Ajv, a JSON Schema validator that
 *   shares no code with zod, confirms the document allows — are never refused
 *   with 400: they may be 401, 404, 409, 412 or 422 for reasons the schema
 *   does not cover (a wrong password, a product out of stock), but only with
 *   a status the operation documents, and each operation is accepted (2xx)
 *   at least once;
 * - for every declared constraint of every field (minLength, maxLength,
 *   pattern, minimum, maximum, enum, type, required, additionalProperties,
 *   minProperties, minItems, maxItems, a path id's format), requests that
 *   break it and nothing else — which Ajv confirms the document refuses —
 *   are refused with 400 `validation_failed` naming the field (a missing or
 *   empty `Idempotency-Key`: `idempotency_key_missing`; a path id that is not
 *   a UUID: 404, as the document says), and change nothing in the database
 *   (but the 404 kept as an idempotency key's answer, as every 404 is).
 * The refusals run first, so no background work of an accepted request
 * (a payment's capture) runs during them.
 *
 * CONSTRAINT_SEED (default 20260115), CONSTRAINT_RUNS (requests per broken
 * constraint, default 3) and CONSTRAINT_VALID_RUNS (allowed requests per
 * operation, default 25) choose the run.
 */

const SEED = Number(process.env.CONSTRAINT_SEED ?? 20260115)
const RUNS = Number(process.env.CONSTRAINT_RUNS ?? 3)
const VALID_RUNS = Number(process.env.CONSTRAINT_VALID_RUNS ?? 25)

// The operations and their constraints, read from the document at collection time, so that each gets its own test.
const collect = await createTestApp({ database: 'unreachable' })
const DOC = await loadDocument((path) => Promise.resolve(collect.app.request(path)))
await collect.close()
const OPS = operations(DOC).filter((op) => op.access !== 'signed' && constraintSites(DOC, op).some((s) => s.where !== 'path'))
const SITES = OPS.flatMap((op) =>
  constraintSites(DOC, op).map((site) => [`${op.id} ${fieldName(site)}: ${site.constraint}`, op, site] as const),
)

let h: Harness
let v: SchemaValidator
let buyer: SessionBody
let pools: Pools
let ids: { orderId: string; productId: string; jobId: string }
const accepted = new Map<string, number>()

beforeAll(async () => {
  h = await createHarness({ tag: 'constraints', redis: false, env: { RATE_LIMIT_AUTH: '100000/60', ORDER_TTL_SECONDS: '3600' } })
  v = createSchemaValidator(DOC)
  buyer = await h.customer('buyer')
  const products = await Promise.all([1, 2, 3].map((i) => h.product({ stock: 500, priceCents: 100 * i })))
  const scratch = await h.product({ stock: 50 })
  const order = await h.order(buyer, [{ productId: products[0]!.id, quantity: 1 }])
  const [job] = await h.sql<{ id: string }[]>`select id from jobs order by id limit 1`
  ids = { orderId: order.id, productId: scratch.id, jobId: job!.id }
  pools = {
    // Orders are made of these only: the admin routes change the scratch product, whose price may become one that overflows a total.
    productIds: products.map((p) => p.id),
    scratchProductIds: [],
    orderIds: [order.id],
    cursors: [],
    jobIds: [job!.id],
    refreshTokens: [buyer.refreshToken],
    emails: [buyer.user.email],
    password: PASSWORD,
  }
})
afterAll(async () => {
  await h?.close()
})

const tokenFor = (op: Operation) => (op.access === 'admin' ? h.adminToken : op.access === 'customer' ? buyer.accessToken : undefined)

/** The ids in the path: the buyer's order, the scratch product, a job. */
function pathValues(op: Operation): Record<string, string> {
  const values: Record<string, string> = {}
  for (const p of paramsIn(op, 'path')) {
    if (p.name !== 'id') throw new Error(`no value for {${p.name}} in ${op.id}`)
    values.id = op.path.startsWith('/v1/orders/') ? ids.orderId : op.path.startsWith('/v1/admin/jobs/') ? ids.jobId : ids.productId
  }
  return values
}

/** A query value as OpenAPI reads it for its schema: decimal notation is a number, anything else stays text. */
const deserialize = (s: JsonSchema, value: string) =>
  (s.type === 'integer' || s.type === 'number') && /^-?[0-9]+(\.[0-9]+)?$/.test(value) ? Number(value) : value

/** What Ajv finds wrong with the request against the document, part by part. */
function documentErrors(op: Operation, r: PartsRequest): string[] {
  const out: string[] = []
  if (op.body) out.push(...v.errors(op.body, r.body).map((e) => `body${e}`))
  for (const p of op.params) {
    const value =
      p.in === 'query' ? r.query[p.name] : p.in === 'header' ? r.headers[p.name] : p.in === 'path' ? r.pathValues[p.name] : undefined
    if (value === undefined) {
      if (p.required) out.push(`${p.in} ${p.name} missing`)
      continue
    }
    out.push(...v.errors(p.schema, p.in === 'query' ? deserialize(p.schema, value) : value).map((e) => `${p.in} ${p.name}${e}`))
  }
  return out
}

function send(op: Operation, r: PartsRequest) {
  const query = Object.entries(r.query).map(([k, value]) => `${encodeURIComponent(k)}=${encodeURIComponent(value)}`)
  const path = fill(op.path, r.pathValues)
  return h.call(op.method, query.length > 0 ? `${path}?${query.join('&')}` : path, {
    token: tokenFor(op),
    headers: r.headers,
    ...(r.body === undefined ? {} : { body: r.body }),
  })
}

/** Everything a request can change, as one row of hashes (job and email rows are counted by id: background work updates them). */
async function state() {
  const rows = await h.sql`
    select
      (select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from users t) as users,
      (select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from refresh_tokens t) as refresh_tokens,
      (select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from products t) as products,
      (select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from orders t) as orders,
      (select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from order_items t) as order_items,
      (select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from idempotency_keys t) as idempotency_keys,
      (select md5(coalesce(string_agg(id::text, '|' order by id), '')) from jobs) as jobs,
      (select count(*)::int from emails) as emails`
  return rows[0]
}

/** What the server answers to a request that breaks `site`. */
function refusal(site: ConstraintSite): [number, string] {
  if (site.where === 'path') return [404, 'not_found']
  if (site.where === 'header' && site.at[0] === 'idempotency-key' && (site.constraint === 'required' || site.constraint === 'minLength'))
    return [400, 'idempotency_key_missing']
  return [400, 'validation_failed']
}

describe('a request that breaks one declared constraint is refused, names the field, and changes nothing', () => {
  it('the sites cover every kind of constraint the document declares', () => {
    const kinds = new Set(SITES.map(([, , site]) => site.constraint))
    for (const kind of [
      'type',
      'minLength',
      'maxLength',
      'pattern',
      'minimum',
      'maximum',
      'enum',
      'required',
      'additionalProperties',
      'minProperties',
      'minItems',
      'maxItems',
      'format',
    ])
      expect(kinds, kind).toContain(kind)
    expect(SITES.length).toBeGreaterThanOrEqual(100)
  })

  it.each(SITES.map((site, i) => [...site, i] as const))('%s', async (label, op, site, i) => {
    const [status, code] = refusal(site)
    await fc.assert(
      fc.asyncProperty(violationArbitrary(DOC, op, site, pools, pathValues(op)), async (r) => {
        const what = `${label} with ${JSON.stringify(r).slice(0, 300)}`
        expect(documentErrors(op, r), `${what}: the document allows it`).not.toEqual([])
        const before = await state()
        const answer = await expectCode(await send(op, r), status, code, what)
        if (code === 'validation_failed')
          expect(
            (answer.json as { errors?: { path: string }[] }).errors?.map((e) => e.path),
            what,
          ).toContain(fieldName(site))
        const after = await state()
        // A 404 is an outcome, and an idempotent route keeps it as the key's answer (API.md § Idempotency); nothing else changes.
        if (site.where === 'path') {
          after!.idempotency_keys = before!.idempotency_keys
        }
        expect(after, `${what} changed the database`).toEqual(before)
      }),
      { seed: SEED + i, numRuns: RUNS, endOnFailure: true },
    )
  })
})

describe('a request the document allows is not refused as invalid', () => {
  it.each(OPS.map((op, i) => [op.id, op, i] as const))('%s', async (label, op, i) => {
    await fc.assert(
      fc.asyncProperty(validPartsArbitrary(DOC, op, pools, pathValues(op)), async (r) => {
        const what = `${label} with ${JSON.stringify(r).slice(0, 300)}`
        expect(documentErrors(op, r), `${what}: the generator made a request the document refuses`).toEqual([])
        const answer = await expectSafeAnswer(await send(op, r), what, op)
        expect(answer.status, `${what}: ${answer.text.slice(0, 300)}`).not.toBe(400)
        expect(op.statuses, `${what}: ${answer.status} is not documented`).toContain(answer.status)
        if (answer.status < 300) accepted.set(op.id, (accepted.get(op.id) ?? 0) + 1)
        const body = answer.json as { nextCursor?: unknown; refreshToken?: unknown } | undefined
        if (typeof body?.nextCursor === 'string') pools.cursors.push(body.nextCursor)
        if (typeof body?.refreshToken === 'string') pools.refreshTokens.push(body.refreshToken)
      }),
      { seed: SEED + i, numRuns: VALID_RUNS, endOnFailure: true },
    )
    expect(accepted.get(op.id) ?? 0, `${label} was never accepted`).toBeGreaterThan(0)
  })
})
