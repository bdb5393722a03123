import fc from 'fast-check'
import {
  buildSchema,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLOutputType,
  getNamedType,
  isEnumType,
  isListType,
  isNonNullType,
  isObjectType,
  isScalarType,
} from 'graphql'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ERROR_CODES } from '../../src/core/errors.ts'
import { TYPE_DEFS } from '../../src/graphql/schema.ts'
import type { SessionBody } from '../contract/helpers.ts'
import { createHarness, type Harness } from './harness.ts'
import { expectSafeAnswer } from './requests.ts'

/*
 * Property-based queries against POST and GET /graphql, generated from the
 * schema edgeshop serves: valid and invalid fields, arguments of the right
 * and wrong types, aliases, nesting past the depth limit, unknown operations
 * and text that is not GraphQL, as anyone, a customer, an admin or a forged
 * token. For every answer: no 5xx; the headers, the request id and no leak
 * (as every REST answer); a refusal of the whole request is a 4xx with a
 * known code; every GraphQL error carries a known code, and none is
 * `internal_error`; nothing is logged as an unhandled error; a customer's
 * answer holds no admin-only data. FUZZ_SEED and FUZZ_RUNS (default 300
 * queries) choose the run, as for the REST fuzzer.
 */

const SEED = Number(process.env.FUZZ_SEED ?? 20230605)
const RUNS = Number(process.env.FUZZ_RUNS ?? 300)
const SCHEMA = buildSchema(TYPE_DEFS)
const ACTORS = ['anonymous', 'customer', 'admin', 'forged'] as const

let h: Harness
let customer: SessionBody
let productIds: string[] = []
let orderIds: string[] = []
/** What only its owner (or an admin) may see: the customer's order, another customer's, and every job. */
let secrets: { customer: string[]; admin: string[] }

beforeAll(async () => {
  h = await createHarness({ tag: 'graphql_fuzz', env: { RATE_LIMIT_AUTH: '60/60', LOG_LEVEL: 'warn' } })
  customer = await h.customer('gq')
  const other = await h.customer('gq-other')
  const products = await Promise.all([0, 1, 2].map((i) => h.product({ stock: 50, priceCents: 100 * (i + 1) })))
  productIds = products.map((p) => p.id)
  const own = (await h.order(customer, [{ productId: productIds[0]!, quantity: 1 }])).id
  const others = (await h.order(other, [{ productId: productIds[1]!, quantity: 1 }])).id
  orderIds = [own, others]
  const jobs = (await h.sql<{ id: string }[]>`select id from jobs`).map((j) => j.id)
  secrets = { customer: [others, ...jobs], admin: [own, others, ...jobs] }
})

afterAll(() => h?.close())

/** The generator, and whether this query may hold mistakes (unknown fields and arguments, values of the wrong type). */
type Gen = fc.GeneratorValue
interface Draw {
  g: Gen
  sloppy: boolean
}

const STRINGS = ['', 'x', '%', "'; drop table products; --", 'ünïcødé', 'a'.repeat(300), '\u0000', 'eyJpZCI6MX0', '../../etc']
const INTS = [-1, 0, 1, 5, 20, 100, 101, 2 ** 31 - 1, 2 ** 31, 1e20]

/** A literal for an argument of `type`: usually of that type, sometimes of another. */
function literal({ g, sloppy }: Draw, type: GraphQLInputType): string {
  const named = getNamedType(type)
  if (sloppy && g(fc.integer, { min: 0, max: 4 }) === 0)
    return g(fc.constantFrom, '"text"', '12', 'true', 'null', '[1, 2]', '{a: 1}', 'NOT_A_VALUE')
  if (isEnumType(named)) return g(fc.constantFrom, ...named.getValues().map((v) => v.name), ...(sloppy ? ['bogus'] : []))
  if (isScalarType(named)) {
    if (named.name === 'Int') return String(g(fc.constantFrom, ...INTS))
    if (named.name === 'Boolean') return g(fc.constantFrom, 'true', 'false')
    const pool = named.name === 'ID' ? [...productIds, ...orderIds, ...STRINGS] : STRINGS
    return JSON.stringify(g(fc.constantFrom, ...pool))
  }
  return 'null'
}

function args(d: Draw, list: readonly GraphQLArgument[]): string {
  const chosen = list.filter((a) => isNonNullType(a.type) || d.g(fc.boolean))
  if (d.sloppy && d.g(fc.integer, { min: 0, max: 4 }) === 0)
    chosen.push({ name: 'unknownArgument', type: SCHEMA.getType('String') } as GraphQLArgument)
  return chosen.length === 0 ? '' : `(${chosen.map((a) => `${a.name}: ${literal(d, a.type)}`).join(', ')})`
}

/** A selection set on `type`, `depth` levels down, going on to at most `maxDepth`. */
function selection(d: Draw, type: GraphQLOutputType, depth: number, maxDepth: number): string {
  const { g } = d
  const named = getNamedType(type)
  if (!isObjectType(named)) return ''
  const fields = Object.values(named.getFields()) as GraphQLField<unknown, unknown>[]
  const count = g(fc.integer, { min: 1, max: 3 })
  const parts: string[] = []
  for (let i = 0; i < count; i++) {
    if (d.sloppy && g(fc.integer, { min: 0, max: 4 }) === 0) {
      parts.push('noSuchField')
      continue
    }
    // (An index, not the field: fast-check prints what it generates, and a schema type refers back to itself.)
    const field = fields[g(fc.integer, { min: 0, max: fields.length - 1 })]!
    const alias = g(fc.integer, { min: 0, max: 5 }) === 0 ? `a${i}: ` : ''
    const inner = getNamedType(field.type)
    const isObject = isObjectType(inner) || (isListType(field.type) && isObjectType(inner))
    if (isObject && depth >= maxDepth) continue
    const sub = isObject ? ` { ${selection(d, field.type, depth + 1, maxDepth) || '__typename'} }` : ''
    parts.push(`${alias}${field.name}${args(d, field.args)}${sub}`)
  }
  return parts.join(' ') || '__typename'
}

function document(g: Gen): string {
  const kind = g(fc.integer, { min: 0, max: 19 })
  if (kind === 0) return g(fc.string, { maxLength: 80 })
  if (kind === 1) return 'mutation { products { items { id } } }'
  if (kind === 2) return `{ ${Array.from({ length: 12 }, (_, i) => `p${i}: products { items { id } }`).join(' ')} }`
  const maxDepth = g(fc.integer, { min: 1, max: 9 })
  const draw = { g, sloppy: g(fc.integer, { min: 0, max: 2 }) === 0 }
  return `query Fuzz { ${selection(draw, SCHEMA.getQueryType()!, 1, maxDepth)} }`
}

const figures = { requests: 0, byStatus: new Map<number, number>(), byCode: new Map<string, number>() }

describe('fuzzing /graphql from its schema', () => {
  it('answers every generated query safely: no 5xx, known codes only, no internal error, no admin data for others', async () => {
    await fc.assert(
      fc.asyncProperty(fc.gen(), async (g) => {
        const actor: (typeof ACTORS)[number] = g(fc.constantFrom, ...ACTORS)
        const query = document(g)
        const token = {
          anonymous: undefined,
          customer: customer.accessToken,
          admin: h.adminToken,
          forged: `${customer.accessToken.split('.').slice(0, 2).join('.')}.${'A'.repeat(43)}`,
        }[actor]
        const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {}
        const get = g(fc.integer, { min: 0, max: 3 }) === 0
        const res = get
          ? await h.t.app.request(`/graphql?query=${encodeURIComponent(query)}`, { headers })
          : await h.t.app.request('/graphql', {
              method: 'POST',
              headers: { ...headers, 'Content-Type': 'application/json' },
              body: JSON.stringify({ query }),
            })
        const errorsBefore = h.t.logs.filter((l) => l.level === 'error').length
        const label = `${get ? 'GET' : 'POST'} as ${actor}: ${query.slice(0, 300)}`
        // A GraphQL refusal is a GraphQL answer (`errors`, each with its code), not problem details.
        const problem = /^application\/problem\+json/.test(res.headers.get('content-type') ?? '')
        const answer = await expectSafeAnswer(res, label, { plainErrors: problem ? [] : [400] })
        figures.requests++
        figures.byStatus.set(answer.status, (figures.byStatus.get(answer.status) ?? 0) + 1)
        expect([200, 400, 401, 413], `${label}: ${answer.text.slice(0, 300)}`).toContain(answer.status)
        expect(h.t.logs.filter((l) => l.level === 'error').slice(errorsBefore), label).toEqual([])
        if (problem) return
        const body = answer.json as { data?: Record<string, unknown> | null; errors?: { extensions?: { code?: string } }[] }
        for (const e of body.errors ?? []) {
          const code = e.extensions?.code ?? 'none'
          figures.byCode.set(code, (figures.byCode.get(code) ?? 0) + 1)
          expect([...Object.keys(ERROR_CODES)], `${label}: ${JSON.stringify(e)}`).toContain(code)
          expect(code, `${label}: ${JSON.stringify(e)}`).not.toBe('internal_error')
          // What yoga says of an error it masked: something threw that no one meant to (a validation rule, say).
          expect((e as { message?: string }).message, `${label}: ${JSON.stringify(e)}`).not.toBe('Unexpected error.')
        }
        if (answer.status === 400) expect(body.errors?.length, label).toBeGreaterThan(0)
        // Orders and jobs reach only whoever may see them: a customer its own orders, anyone else none.
        if (actor !== 'admin')
          for (const id of actor === 'customer' ? secrets.customer : secrets.admin) expect(answer.text, label).not.toContain(id)
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    )
    const statuses = [...figures.byStatus].map(([s, n]) => `${s}×${n}`).join(' ')
    const codes = [...figures.byCode].map(([c, n]) => `${c}×${n}`).join(' ')
    console.log(`[graphql fuzz] seed ${SEED}: ${figures.requests} queries; statuses ${statuses}; error codes ${codes}`)
    // The generator reaches both answers and refusals.
    expect(figures.byStatus.get(200) ?? 0).toBeGreaterThan(RUNS / 10)
    expect(figures.byStatus.get(400) ?? 0).toBeGreaterThan(RUNS / 20)
  })
})
