import fc from 'fast-check'
import { encodeCursor } from '../../src/core/page.ts'
import { type JsonSchema, type OpenApiDocument, type Operation, paramsIn, resolve } from './openapi-model.ts'

/*
 * fast-check arbitraries for requests, made from the OpenAPI document: valid
 * values from each schema (so requests reach the routes' logic), the values a
 * hostile or broken client sends — wrong types, huge and unicode strings,
 * NUL, nulls, extra properties, missing fields, bodies that are not JSON,
 * nested too deep or over the size limit — and requests that break exactly
 * one declared constraint.
 */

/** A string's length as JSON Schema counts it: characters (code points), not UTF-16 units. */
export const chars = (v: string) => [...v].length

/** Ids and secrets the fuzzer knows; the arrays grow while it runs (new orders, new products), and are read when a value is drawn. */
export interface Pools {
  /** Products to order: the fuzzer never archives or edits these. */
  productIds: string[]
  /** Products the admin routes are fuzzed on (made by the fuzzer, or for it). */
  scratchProductIds: string[]
  orderIds: string[]
  /** `nextCursor` values seen in answers. */
  cursors: string[]
  jobIds: string[]
  refreshTokens: string[]
  emails: string[]
  password: string
}

/** One generated request, before the actor's token is added. */
export interface FuzzRequest {
  actor: Actor
  path: string
  headers: Record<string, string>
  body: string | undefined
  /** What the body is, for the report. */
  bodyKind: string
}

export type Actor = 'anonymous' | 'alice' | 'bob' | 'admin' | 'forged' | 'metrics'

const pick = (pool: () => string[], fallback: fc.Arbitrary<string>) =>
  fc.nat().chain((i) => {
    const list = pool()
    return list.length === 0 ? fallback : fc.constant(list[i % list.length]!)
  })

/** Strings no schema expects: SQL, traversal, control and non-BMP characters, NUL, very long ones. */
export const hostileString = fc.oneof(
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    'a\u0000b',
    "' OR '1'='1",
    "'; DROP TABLE orders; --",
    '../../etc/passwd',
    '%00',
    '$' + '{7*7}',
    '{{7*7}}',
    '<script>alert(1)</script>',
    '\u202e\u0000\ufeff',
    '😀'.repeat(40),
    'null',
    'undefined',
    '__proto__',
    'constructor',
    '-1',
    '1e309',
    'NaN',
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', minLength: 200, maxLength: 400 }),
  fc.integer({ min: 1000, max: 9000 }).map((n) => 'x'.repeat(n)),
)

/** Values of the wrong type, or absurd ones of the right type. */
const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  hostileString,
  fc.constantFrom(null, true, false, 0, -1, 1.5, 2 ** 53, -(2 ** 31) - 1, 1e308, [], {}, [null], { $gt: '' }),
  fc.integer(),
  fc.double({ noNaN: true }),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
)

/** A value the schema accepts, made to hit the routes' interesting cases. */
export function validArbitrary(doc: OpenApiDocument, schema: JsonSchema, name: string, pools: Pools, depth = 0): fc.Arbitrary<unknown> {
  const s = resolve(doc, schema)
  if (s.enum) return fc.constantFrom(...s.enum)
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type
  switch (type) {
    case 'object': {
      const model: Record<string, fc.Arbitrary<unknown>> = {}
      for (const [key, prop] of Object.entries(s.properties ?? {})) model[key] = validArbitrary(doc, prop, key, pools, depth + 1)
      const fewest = s.minProperties ?? 0
      return fc.record(model, { requiredKeys: s.required ?? [] }).filter((o) => Object.keys(o).length >= fewest)
    }
    case 'array': {
      const item = validArbitrary(doc, s.items ?? {}, name, pools, depth + 1)
      // Mostly short; sometimes at the cap. Objects differ in their first property (an order names each product once).
      const max = Math.min(s.maxItems ?? 5, 60)
      const key = (v: unknown) => JSON.stringify(v !== null && typeof v === 'object' ? Object.values(v)[0] : v).toLowerCase()
      return fc.oneof(
        { weight: 6, arbitrary: fc.uniqueArray(item, { minLength: s.minItems ?? 0, maxLength: Math.min(max, 4), selector: key }) },
        { weight: 1, arbitrary: fc.uniqueArray(item, { minLength: max, maxLength: max, selector: key }) },
      )
    }
    case 'integer': {
      const min = s.minimum ?? -(2 ** 31)
      const max = s.maximum ?? 2 ** 31 - 1
      // Small values reach the business rules (stock, quantities); the bounds reach the validators.
      return fc.oneof(
        { weight: 4, arbitrary: fc.integer({ min, max: Math.min(max, min + 5) }) },
        { weight: 1, arbitrary: fc.constantFrom(min, max) },
        { weight: 1, arbitrary: fc.integer({ min, max }) },
      )
    }
    case 'number':
      return fc.double({ min: s.minimum ?? -1e9, max: s.maximum ?? 1e9, noNaN: true })
    case 'boolean':
      return fc.boolean()
    default:
      return validString(s, name, pools)
  }
}

function validString(s: JsonSchema, name: string, pools: Pools): fc.Arbitrary<string> {
  const min = s.minLength ?? 0
  const max = s.maxLength ?? 100
  const pattern = s.pattern === undefined ? undefined : new RegExp(s.pattern, 'u')
  // Exactly what the document allows: lengths in characters, and the pattern.
  const fits = (v: string) => chars(v) >= min && chars(v) <= max && (pattern?.test(v) ?? true)
  return stringFor(s, name, pools, min, max, pattern).filter(fits)
}

function stringFor(s: JsonSchema, name: string, pools: Pools, min: number, max: number, pattern: RegExp | undefined): fc.Arbitrary<string> {
  if (name === 'email')
    return fc.oneof(
      pick(() => pools.emails, fc.constant('nobody@example.test')),
      fc.stringMatching(/^[a-z0-9]{1,12}$/).map((local) => `${local}@example.test`),
      // Any address the pattern takes: `o!reilly@…`, `a{b}@…`.
      ...(pattern ? [fc.stringMatching(pattern)] : []),
    )
  if (name === 'password')
    return fc.oneof(fc.constant(pools.password), fc.string({ unit: 'grapheme', minLength: min, maxLength: Math.min(max, 40) }))
  if (name === 'refreshToken')
    return fc.oneof(
      pick(() => pools.refreshTokens, fc.constant('x')),
      fc.string({ minLength: 1, maxLength: 60 }),
    )
  if (name === 'paymentToken')
    return fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom('tok_ok', 'tok_declined', 'tok_flaky') },
      { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: max }) },
    )
  // A cursor the API gave out, or one for any id (a cursor is only a position).
  if (name === 'cursor')
    return fc.oneof(
      pick(() => pools.cursors, fc.uuid().map(encodeCursor)),
      fc.uuid().map(encodeCursor),
    )
  if (s.format === 'uuid')
    return fc.oneof(
      { weight: 12, arbitrary: pick(() => pools.productIds, fc.uuid()) },
      { weight: 1, arbitrary: pick(() => pools.scratchProductIds, fc.uuid()) },
      { weight: 1, arbitrary: pick(() => pools.orderIds, fc.uuid()) },
      { weight: 1, arbitrary: fc.uuid() },
      { weight: 1, arbitrary: pick(() => pools.productIds, fc.uuid()).map((id) => id.toUpperCase()) },
    )
  // Keys: mostly fresh, sometimes any the pattern allows.
  if (name === 'idempotency-key' && pattern)
    return fc.oneof({ weight: 3, arbitrary: fc.uuid() }, { weight: 1, arbitrary: fc.stringMatching(pattern) })
  // A code, a key, an id: drawn from its pattern. Free text: any text, and what the pattern makes.
  if (pattern && !pattern.test('free text')) return fc.stringMatching(pattern)
  return fc.oneof(
    fc.string({ unit: 'grapheme', minLength: min, maxLength: Math.min(max, 30) }),
    fc.string({ unit: 'grapheme-ascii', minLength: min, maxLength: Math.min(max, 30) }),
    ...(pattern ? [fc.stringMatching(pattern)] : []),
  )
}

/** A JSON body: valid, valid but for one field, not an object, not JSON, too deep or too big. */
function bodyArbitrary(doc: OpenApiDocument, schema: JsonSchema, pools: Pools): fc.Arbitrary<{ body: string; kind: string }> {
  const valid = validArbitrary(doc, schema, 'body', pools)
  const s = resolve(doc, schema)
  const keys = Object.keys(s.properties ?? {})
  const json = (kind: string) => (v: unknown) => ({ body: JSON.stringify(v), kind })
  const variants: fc.WeightedArbitrary<{ body: string; kind: string }>[] = [
    { weight: 10, arbitrary: valid.map(json('valid')) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(valid, fc.constantFrom(...(keys.length > 0 ? keys : ['x'])), hostileValue)
        .map(([v, key, bad]) => ({ ...(v as object), [key]: bad }))
        .map(json('one field hostile')),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(valid, fc.constantFrom('role', 'userId', 'status', 'priceCents', 'stock', '__proto__', 'constructor', 'extra'), hostileValue)
        .map(
          ([v, key, extra]) =>
            `${JSON.stringify(v).slice(0, -1)}${Object.keys(v as object).length > 0 ? ',' : ''}${JSON.stringify(key)}:${JSON.stringify(extra) ?? 'null'}}`,
        )
        .map((body) => ({ body, kind: 'extra property' })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(valid, fc.constantFrom(...(keys.length > 0 ? keys : ['x'])))
        .map(([v, key]) => {
          const { [key]: _, ...rest } = v as Record<string, unknown>
          return rest
        })
        .map(json('field missing')),
    },
    { weight: 1, arbitrary: hostileValue.map(json('not an object')) },
    {
      weight: 1,
      arbitrary: fc
        .oneof(
          fc.constantFrom('', '{', '{"a":', '{"a":1,}', "{'a':1}", 'nul', '[1,2', '{"a":"\\x"}', '\uFEFF{}', '{"a":1}{"b":2}'),
          fc.string({ unit: 'binary', maxLength: 60 }),
        )
        .map((body) => ({ body, kind: 'not JSON' })),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 100, max: 20_000 }), fc.boolean()).map(([n, arrays]) => ({
        body: arrays ? `${'['.repeat(n)}${']'.repeat(n)}` : `${'{"a":'.repeat(Math.min(n, 5000))}1${'}'.repeat(Math.min(n, 5000))}`,
        kind: 'deeply nested',
      })),
    },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 60 * 1024, max: 80 * 1024 })
        .chain((size) =>
          valid.map((v) => ({ body: JSON.stringify({ ...(v as object), pad: 'x'.repeat(size) }), kind: 'near or over the body limit' })),
        ),
    },
  ]
  return fc.oneof(...variants)
}

function queryValue(doc: OpenApiDocument, schema: JsonSchema, name: string, pools: Pools): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: validArbitrary(doc, schema, name, pools).map(String) },
    { weight: 2, arbitrary: hostileString },
    { weight: 1, arbitrary: fc.constantFrom('0', '-1', '101', '1.5', '0x10', '1e3', 'true', '[]') },
  )
}

function idValue(op: Operation, pools: Pools): fc.Arbitrary<string> {
  const own = op.path.startsWith('/v1/orders/')
    ? () => pools.orderIds
    : op.path.startsWith('/v1/admin/jobs/')
      ? () => pools.jobIds
      : op.method === 'GET'
        ? () => [...pools.productIds, ...pools.scratchProductIds]
        : () => pools.scratchProductIds
  return fc.oneof(
    { weight: 6, arbitrary: pick(own, fc.uuid()) },
    // Another kind's id; writes never reach the products that orders are made of.
    {
      weight: 1,
      arbitrary: pick(
        () => [...pools.orderIds, ...pools.jobIds, ...(op.method === 'GET' ? pools.productIds : pools.scratchProductIds)],
        fc.uuid(),
      ),
    },
    { weight: 1, arbitrary: pick(own, fc.uuid()).map((id) => id.toUpperCase()) },
    { weight: 2, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: hostileString.filter((s) => s.length > 0 && s.length < 2000) },
  )
}

/** Requests for one operation: every parameter, header and body drawn as above, from an actor who may or may not be allowed. */
export function requestArbitrary(doc: OpenApiDocument, op: Operation, pools: Pools): fc.Arbitrary<FuzzRequest> {
  const actors: fc.WeightedArbitrary<Actor>[] =
    op.access === 'admin'
      ? [
          { weight: 6, arbitrary: fc.constant('admin') },
          { weight: 1, arbitrary: fc.constantFrom('alice', 'bob', 'anonymous', 'forged') },
        ]
      : op.access === 'customer'
        ? [
            { weight: 4, arbitrary: fc.constant('alice') },
            { weight: 3, arbitrary: fc.constant('bob') },
            { weight: 1, arbitrary: fc.constantFrom('admin', 'anonymous', 'forged') },
          ]
        : op.access === 'metrics'
          ? [
              { weight: 3, arbitrary: fc.constant('metrics') },
              { weight: 1, arbitrary: fc.constantFrom<Actor>('anonymous', 'alice', 'admin', 'forged') },
            ]
          : [{ weight: 1, arbitrary: fc.constantFrom<Actor>('anonymous', 'alice', 'admin', 'forged') }]

  const pathParams: Record<string, fc.Arbitrary<string>> = {}
  for (const p of paramsIn(op, 'path')) {
    if (p.name === 'id') pathParams.id = idValue(op, pools)
    else if (p.schema.enum)
      pathParams[p.name] = fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(...(p.schema.enum as string[])) },
        { weight: 1, arbitrary: hostileString.filter((s) => s.length > 0) },
      )
    else
      pathParams[p.name] = fc.oneof(
        fc.constantFrom('payment.capture', 'email.order_paid', 'order.expire'),
        hostileString.filter((s) => s.length > 0),
      )
  }

  // Mostly a valid query (so the route's logic runs); otherwise one parameter hostile.
  const queryParams = paramsIn(op, 'query')
  const validQuery = fc.record(
    Object.fromEntries(queryParams.map((p) => [p.name, validArbitrary(doc, p.schema, p.name, pools).map(String)])),
    { requiredKeys: [] },
  )
  const query: fc.Arbitrary<Record<string, string>> =
    queryParams.length === 0
      ? fc.constant({})
      : fc.oneof(
          { weight: 7, arbitrary: validQuery },
          {
            weight: 3,
            arbitrary: fc
              .tuple(validQuery, fc.constantFrom(...queryParams), fc.nat())
              .chain(([q, p, _]) => queryValue(doc, p.schema, p.name, pools).map((v) => ({ ...q, [p.name]: v }))),
          },
        )

  const headers: Record<string, fc.Arbitrary<string>> = {}
  for (const p of paramsIn(op, 'header')) {
    if (p.name === 'idempotency-key')
      headers['Idempotency-Key'] = fc.oneof(
        { weight: 6, arbitrary: fc.uuid() },
        // Keys used again: replays, and the same key for another body.
        { weight: 2, arbitrary: fc.constantFrom('fuzz-key-1', 'fuzz-key-2', 'fuzz-key-3') },
        { weight: 1, arbitrary: fc.constantFrom('', ' ', 'k'.repeat(256), 'clé', 'a\tb') },
      )
    else if (p.name === 'if-match')
      headers['If-Match'] = fc.constantFrom('"1"', '"2"', '"3"', '*', 'W/"1"', '"abc"', '"1", "2"', '', '"99999999999999999999"')
    else headers[p.name] = fc.oneof(fc.constantFrom('not.a.jwt', ''), fc.string({ unit: 'grapheme-ascii', maxLength: 300 }))
  }

  const body = op.body
    ? bodyArbitrary(doc, op.body, pools)
    : op.method === 'GET'
      ? fc.constant(undefined)
      : fc.oneof(
          { weight: 5, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: hostileValue.map((v) => ({ body: JSON.stringify(v) ?? 'null', kind: 'unexpected body' })) },
        )

  return fc
    .record({
      actor: fc.oneof(...actors),
      path: fc.record(pathParams),
      query,
      unknownQuery: fc.option(fc.constantFrom('debug=1', 'role=admin', 'userId=1', 'limit=1&limit=2', '__proto__[x]=1'), { freq: 10 }),
      // Each header mostly present: without Idempotency-Key a checkout goes no further than 400.
      headers: fc.record(Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, fc.option(v, { freq: 7 })]))),
      body,
      contentType: fc.oneof(
        { weight: 12, arbitrary: fc.constant('application/json') },
        {
          weight: 1,
          arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', ''),
        },
      ),
    })
    .map((r) => {
      const path = op.path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(r.path[name] ?? ''))
      const params = Object.entries(r.query).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      if (r.unknownQuery) params.push(r.unknownQuery)
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(r.headers)) if (v !== null) headers[k] = v
      if (r.body !== undefined && r.contentType !== '') headers['Content-Type'] = r.contentType
      return {
        actor: r.actor,
        path: params.length > 0 ? `${path}?${params.join('&')}` : path,
        headers,
        body: r.body?.body,
        bodyKind: r.body?.kind ?? 'none',
      }
    })
}

/*
 * Requests held to the document's declared constraints: every part valid
 * (for the constraint test's "allowed" half), or valid but for one declared
 * constraint of one field (its "refused" half).
 */

/** A request as parts: path values, query, headers and the body as a value (`undefined`: none). */
export interface PartsRequest {
  pathValues: Record<string, string>
  query: Record<string, string>
  headers: Record<string, string>
  body: unknown
}

/** One declared constraint of one field: where it is, and which keyword. */
export interface ConstraintSite {
  where: 'body' | 'query' | 'header' | 'path'
  /** The property path inside the body, or the parameter's name. */
  at: (string | number)[]
  schema: JsonSchema
  constraint: string
}

/** The field as the server names it in `errors`: `body.items.0.quantity`, `query.limit`, `headers.idempotency-key`. */
export function fieldName(site: ConstraintSite): string {
  const where = site.where === 'header' ? 'headers' : site.where
  const at = site.constraint === 'additionalProperties' ? [...site.at, 'unexpected'] : site.at
  return [where, ...at].join('.')
}

/** A value HTTP can carry in a header as it is (Latin-1, no controls, no surrounding white space). */
export const sendableHeader = (v: string) => {
  try {
    return new Headers({ x: v }).get('x') === v
  } catch {
    return false
  }
}

/** A value a URL can carry (`encodeURIComponent` refuses unpaired surrogates). */
const sendableQuery = (v: string) => {
  try {
    encodeURIComponent(v)
    return true
  } catch {
    return false
  }
}

const typeOf = (s: JsonSchema) => (Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type)

/** Every declared constraint a client can break in one field of the operation's request. */
export function constraintSites(doc: OpenApiDocument, op: Operation): ConstraintSite[] {
  const sites: ConstraintSite[] = []
  const scalar = (where: ConstraintSite['where'], at: (string | number)[], s: JsonSchema) => {
    const add = (constraint: string) => sites.push({ where, at, schema: s, constraint })
    if (s.enum) return add('enum')
    const type = typeOf(s)
    if (type === 'string') {
      if (where === 'body') add('type')
      if ((s.minLength ?? 0) > 0) add('minLength')
      if (s.maxLength !== undefined) add('maxLength')
      if (s.pattern !== undefined) add('pattern')
      if (where === 'path' && s.format) add('format')
    } else if (type === 'integer' || type === 'number') {
      add('type')
      if (s.minimum !== undefined) add('minimum')
      if (s.maximum !== undefined) add('maximum')
    } else if (type === 'boolean') add('type')
  }
  const walkBody = (schema: JsonSchema, at: (string | number)[]) => {
    const s = resolve(doc, schema)
    const type = typeOf(s)
    if (type === 'object') {
      sites.push({ where: 'body', at, schema: s, constraint: 'type' })
      if (s.additionalProperties === false) sites.push({ where: 'body', at, schema: s, constraint: 'additionalProperties' })
      if ((s.minProperties ?? 0) > 0) sites.push({ where: 'body', at, schema: s, constraint: 'minProperties' })
      for (const key of s.required ?? []) sites.push({ where: 'body', at: [...at, key], schema: s, constraint: 'required' })
      for (const [key, prop] of Object.entries(s.properties ?? {})) walkBody(prop, [...at, key])
    } else if (type === 'array') {
      sites.push({ where: 'body', at, schema: s, constraint: 'type' })
      if ((s.minItems ?? 0) > 0) sites.push({ where: 'body', at, schema: s, constraint: 'minItems' })
      if (s.maxItems !== undefined) sites.push({ where: 'body', at, schema: s, constraint: 'maxItems' })
      if (s.items) walkBody(s.items, [...at, 0])
    } else scalar('body', at, s)
  }
  if (op.body) walkBody(op.body, [])
  for (const p of op.params) {
    const s = resolve(doc, p.schema)
    if (p.in === 'header' && p.required) sites.push({ where: 'header', at: [p.name], schema: s, constraint: 'required' })
    if (p.in === 'query' || p.in === 'header' || p.in === 'path') scalar(p.in, [p.name], s)
  }
  // A header pattern that refuses only what HTTP cannot carry (U+0000, unpaired surrogates) cannot be broken by a request.
  return sites.filter(
    (site) => site.where !== 'header' || site.constraint !== 'pattern' || STRANGERS.some((c) => breaksHeader(site.schema, c)),
  )
}

const breaksHeader = (s: JsonSchema, c: string) => sendableHeader(`a${c}a`) && !new RegExp(s.pattern!, 'u').test(`a${c}a`)

/** Every part of the request valid: path values as given, a draw of the query and headers, the body from its schema. */
export function validPartsArbitrary(doc: OpenApiDocument, op: Operation, pools: Pools, pathValues: Record<string, string>) {
  const query: Record<string, fc.Arbitrary<string>> = {}
  const required: string[] = []
  for (const p of paramsIn(op, 'query')) {
    query[p.name] = validArbitrary(doc, p.schema, p.name, pools).map(String).filter(sendableQuery)
    if (p.required) required.push(p.name)
  }
  const headers: Record<string, fc.Arbitrary<string>> = {}
  const requiredHeaders: string[] = []
  for (const p of paramsIn(op, 'header')) {
    headers[p.name] = validArbitrary(doc, p.schema, p.name, pools).map(String).filter(sendableHeader)
    if (p.required) requiredHeaders.push(p.name)
  }
  return fc.record({
    pathValues: fc.constant(pathValues),
    query: fc.record(query, { requiredKeys: required }),
    headers: fc.record(headers, { requiredKeys: requiredHeaders }),
    body: op.body ? validArbitrary(doc, op.body, 'body', pools) : fc.constant(undefined),
  }) as fc.Arbitrary<PartsRequest>
}

const NO_POOLS: Pools = {
  productIds: [],
  scratchProductIds: [],
  orderIds: [],
  cursors: [],
  jobIds: [],
  refreshTokens: [],
  emails: [],
  password: 'x',
}

/** Characters that some pattern refuses: NUL, unpaired surrogates, white space, punctuation, a letter outside ASCII. */
const STRANGERS = ['\u0000', '\ud800', '\udfff', ' ', 'é', '!', '@', '.', '/', 'A']

/** Values of `s` (a string schema) that keep its lengths but break its pattern, made from a valid `v`. */
function patternBreakers(s: JsonSchema, v: string): string[] {
  const re = new RegExp(s.pattern!, 'u')
  const cps = [...v]
  const min = s.minLength ?? 0
  const max = s.maxLength ?? Number.POSITIVE_INFINITY
  const out = new Set<string>()
  for (const stranger of STRANGERS) {
    for (const i of [0, Math.floor(cps.length / 2), cps.length - 1]) {
      const replaced = cps.length > 0 ? [...cps.slice(0, Math.max(i, 0)), stranger, ...cps.slice(Math.max(i, 0) + 1)].join('') : stranger
      const inserted = [...cps.slice(0, Math.max(i, 0)), stranger, ...cps.slice(Math.max(i, 0))].join('')
      for (const candidate of [replaced, inserted]) {
        const n = [...candidate].length
        if (n >= min && n <= max && !re.test(candidate)) out.add(candidate)
      }
    }
  }
  return [...out]
}

/** A value of the field's schema that breaks `site.constraint` and no other of its keywords where that can be helped. */
function badValue(doc: OpenApiDocument, site: ConstraintSite, pools: Pools): fc.Arbitrary<unknown> {
  const s = site.schema
  const name = String(site.at.at(-1) ?? 'body')
  const valid = () => validArbitrary(doc, s, name, pools).map(String)
  switch (site.constraint) {
    case 'type':
      switch (typeOf(s)) {
        case 'string':
          return fc.constantFrom(42, true, null, ['x'], {})
        case 'integer':
        case 'number':
          return site.where === 'body' ? fc.constantFrom('1', 1.5, true, null, [1]) : fc.constantFrom('one', '1.5', '1e1', ' 1', '0x1', '')
        case 'boolean':
          return fc.constantFrom('true', 1, null)
        case 'array':
          return fc.constantFrom({}, 'x', 1, null)
        default:
          return fc.constantFrom([], 'x', 1, null)
      }
    case 'enum':
      return fc.constantFrom('not-a-member', 'PENDING', '', 'x').filter((v) => !(s.enum ?? []).includes(v))
    case 'minimum':
      return fc.integer({ min: -1000, max: -1 }).map((d) => (s.minimum ?? 0) + d)
    case 'maximum':
      return fc.integer({ min: 1, max: 1000 }).map((d) => (s.maximum ?? 0) + d)
    case 'minLength':
      return fc.tuple(valid(), fc.nat()).map(([v, n]) => [...v].slice(0, n % (s.minLength ?? 1)).join(''))
    case 'maxLength':
      return fc.tuple(valid(), fc.integer({ min: 1, max: 20 })).map(([v, extra]) => {
        // More of the value's first character, where the pattern takes it again (a local part, a code, text).
        const first = [...v][0] ?? 'x'
        return first.repeat(Math.max(1, (s.maxLength ?? 0) + extra - chars(v))) + v
      })
    case 'pattern':
      return valid()
        .map((v) => patternBreakers(s, v))
        .filter((list) => list.length > 0)
        .chain((list) => fc.constantFrom(...list))
    case 'format':
      return fc.constantFrom('not-a-uuid', '12345', '0194a1b3-1d2e-7f30-9a4b-5c6d7e8f9a0bX', '0194a1b31d2e7f309a4b5c6d7e8f9a0b')
    case 'minItems':
      return fc.constant([])
    case 'maxItems': {
      const item = validArbitrary(doc, s.items ?? {}, name, NO_POOLS)
      const n = (s.maxItems ?? 0) + 1
      const key = (v: unknown) => JSON.stringify(v !== null && typeof v === 'object' ? Object.values(v)[0] : v).toLowerCase()
      return fc.uniqueArray(item, { minLength: n, maxLength: n, selector: key })
    }
    case 'minProperties':
      return fc.constant({})
    default:
      throw new Error(`no bad value for ${site.constraint}`)
  }
}

/** Sets (or, with `undefined`, deletes) the value at `at` inside a copy of `body`. */
function setIn(body: unknown, at: (string | number)[], value: unknown): unknown {
  if (at.length === 0) return value
  const copy = structuredClone(body) as Record<string | number, unknown>
  let target = copy
  for (const key of at.slice(0, -1)) target = target[key] as Record<string | number, unknown>
  const last = at.at(-1)!
  if (value === undefined) delete target[last]
  else target[last] = value
  return copy
}

/** A request valid in every part but one declared constraint of one field (`site`). */
export function violationArbitrary(
  doc: OpenApiDocument,
  op: Operation,
  site: ConstraintSite,
  pools: Pools,
  pathValues: Record<string, string>,
): fc.Arbitrary<PartsRequest> {
  const base = validPartsArbitrary(doc, op, pools, pathValues)
  const name = String(site.at[0])
  if (site.constraint === 'required')
    return base.map((r) =>
      site.where === 'header'
        ? { ...r, headers: Object.fromEntries(Object.entries(r.headers).filter(([k]) => k !== name)) }
        : { ...r, body: setIn(r.body, site.at, undefined) },
    )
  if (site.constraint === 'additionalProperties')
    return base.map((r) => {
      const target = site.at.length === 0 ? r.body : site.at.reduce<unknown>((v, k) => (v as Record<string | number, unknown>)[k], r.body)
      return { ...r, body: setIn(r.body, site.at, { ...(target as object), unexpected: 1 }) }
    })
  return fc
    .tuple(base, badValue(doc, site, pools))
    .map(([r, bad]) => {
      switch (site.where) {
        case 'body':
          return { ...r, body: setIn(r.body, site.at, bad) }
        case 'query':
          return { ...r, query: { ...r.query, [name]: String(bad) } }
        case 'header':
          return { ...r, headers: { ...r.headers, [name]: String(bad) } }
        default:
          return { ...r, pathValues: { ...r.pathValues, [name]: String(bad) } }
      }
    })
    .filter((r) => Object.values(r.query).every(sendableQuery) && Object.values(r.headers).every(sendableHeader))
}
