import { Ajv2020 } from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'

/*
 * An independent reading of the OpenAPI document's schemas: Ajv, a JSON
 * Schema 2020-12 validator that shares no code with zod or the document's
 * generator, in strict mode (an unknown keyword or a contradiction in a
 * schema is an error), with the standard formats, patterns compiled with the
 * `u` flag and lengths counted in code points as JSON Schema counts them.
 */

type Schema = Record<string, unknown>

/** The Schema Object keywords OpenAPI 3.1 adds to JSON Schema's. */
const OPENAPI_KEYWORDS = ['example', 'discriminator', 'xml', 'externalDocs']

/** `schema` with every `$ref` into `components.schemas` replaced by its target (the document has no recursive schemas). */
export function inline(doc: { components?: { schemas?: Record<string, unknown> } }, schema: unknown, depth = 0): unknown {
  if (depth > 50) throw new Error('schema too deep (recursive $ref?)')
  if (Array.isArray(schema)) return schema.map((s) => inline(doc, s, depth + 1))
  if (schema === null || typeof schema !== 'object') return schema
  const s = schema as Schema
  if (typeof s.$ref === 'string') {
    const name = s.$ref.replace('#/components/schemas/', '')
    const target = doc.components?.schemas?.[name]
    if (target === undefined) throw new Error(`unresolved ${s.$ref}`)
    const { $ref: _, ...rest } = s
    return inline(doc, { ...(target as Schema), ...rest }, depth + 1)
  }
  const out: Schema = {}
  for (const [key, value] of Object.entries(s)) out[key] = key === 'example' || key === 'default' ? value : inline(doc, value, depth + 1)
  return out
}

export interface SchemaValidator {
  /** The places where `value` breaks `schema` (a schema of the document, `$ref`s allowed); empty when it is valid. */
  errors(schema: unknown, value: unknown): string[]
}

/**
 * @example
 * ```ts
 * const v = createSchemaValidator(doc)
 * expect(v.errors({ $ref: '#/components/schemas/SignupRequest' }, body)).toEqual([])
 * ```
 */
export function createSchemaValidator(doc: { components?: { schemas?: Record<string, unknown> } }): SchemaValidator {
  const ajv = new Ajv2020({ strict: true, allErrors: true, unicodeRegExp: true })
  addFormats(ajv)
  for (const keyword of OPENAPI_KEYWORDS) ajv.addKeyword(keyword)
  const compiled = new Map<string, ReturnType<typeof ajv.compile>>()
  return {
    errors(schema, value) {
      const key = JSON.stringify(schema)
      let validate = compiled.get(key)
      if (!validate) {
        validate = ajv.compile(inline(doc, schema) as Schema)
        compiled.set(key, validate)
      }
      if (validate(value)) return []
      return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword}`)
    },
  }
}
