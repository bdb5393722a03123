/*
 * The routes of the API as the security suite sees them: read from the
 * app's own `/openapi.json`, so a route added to the app is attacked by
 * every sweep without anyone listing it here.
 */

/** The subset of JSON Schema the document uses. */
export interface JsonSchema {
  $ref?: string
  type?: string | string[]
  format?: string
  enum?: unknown[]
  pattern?: string
  minLength?: number
  maxLength?: number
  minimum?: number
  maximum?: number
  minItems?: number
  maxItems?: number
  items?: JsonSchema
  properties?: Record<string, JsonSchema>
  required?: string[]
  minProperties?: number
  additionalProperties?: boolean | JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  allOf?: JsonSchema[]
  nullable?: boolean
  default?: unknown
}

export interface OpenApiDocument {
  openapi: string
  paths: Record<string, Record<string, RawOperation>>
  components: { schemas: Record<string, JsonSchema>; securitySchemes?: Record<string, unknown> }
}

interface RawOperation {
  summary?: string
  security?: Record<string, string[]>[]
  parameters?: { name: string; in: 'path' | 'query' | 'header' | 'cookie'; required?: boolean; schema: JsonSchema }[]
  requestBody?: { required?: boolean; content: Record<string, { schema: JsonSchema }> }
  responses: Record<string, { description?: string; content?: Record<string, { schema: JsonSchema }> }>
}

/**
 * Who may call an operation, as the document declares it:
 * - `public`: no credentials;
 * - `customer`: a bearer token of any role;
 * - `admin`: a bearer token, and the route declares 403 `forbidden` for other roles;
 * - `signed`: QStash's `Upstash-Signature`;
 * - `metrics`: the `METRICS_TOKEN` bearer.
 */
export type Access = 'public' | 'customer' | 'admin' | 'signed' | 'metrics'

export interface Parameter {
  name: string
  in: 'path' | 'query' | 'header' | 'cookie'
  required: boolean
  schema: JsonSchema
}

export interface Operation {
  /** `POST /v1/orders/{id}/pay` */
  id: string
  method: string
  path: string
  summary: string
  access: Access
  params: Parameter[]
  /** The JSON request body's schema, resolved. */
  body: JsonSchema | undefined
  bodyRequired: boolean
  /** The statuses the document declares. */
  statuses: number[]
  /** The documented JSON schema of each 2xx answer. */
  success: Map<number, JsonSchema>
  /** Error statuses documented with a plain JSON body instead of problem details (`/readyz`'s 503). */
  plainErrors: number[]
  /** The problem codes each error status declares (its description names them: `` `rate_limited`: … ``). */
  errorCodes: Map<number, string[]>
}

export function resolve(doc: OpenApiDocument, schema: JsonSchema): JsonSchema {
  let s = schema
  for (let i = 0; s.$ref && i < 10; i++) {
    const name = s.$ref.replace('#/components/schemas/', '')
    const target = doc.components.schemas[name]
    if (!target) throw new Error(`unresolved ${s.$ref}`)
    s = target
  }
  return s
}

export function operations(doc: OpenApiDocument): Operation[] {
  const out: Operation[] = []
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const params = (op.parameters ?? []).map((p) => ({ name: p.name, in: p.in, required: p.required ?? false, schema: p.schema }))
      const schemes = (op.security ?? []).flatMap((s) => Object.keys(s))
      const statuses = Object.keys(op.responses).map(Number)
      let access: Access = 'public'
      if (schemes.includes('bearerAuth')) access = statuses.includes(403) ? 'admin' : 'customer'
      else if (schemes.includes('metricsToken')) access = 'metrics'
      else if (schemes.includes('upstashSignature') || params.some((p) => p.in === 'header' && p.name === 'upstash-signature'))
        access = 'signed'
      const bodySchema = op.requestBody?.content['application/json']?.schema
      const success = new Map<number, JsonSchema>()
      const plainErrors: number[] = []
      const errorCodes = new Map<number, string[]>()
      for (const [status, response] of Object.entries(op.responses)) {
        const schema = response.content?.['application/json']?.schema
        if (Number(status) < 300 && schema) success.set(Number(status), resolve(doc, schema))
        if (Number(status) >= 400 && schema) plainErrors.push(Number(status))
        if (Number(status) >= 400)
          errorCodes.set(
            Number(status),
            [...(response.description ?? '').matchAll(/`(\w+)`:/g)].map((m) => m[1]!),
          )
      }
      out.push({
        id: `${method.toUpperCase()} ${path}`,
        method: method.toUpperCase(),
        path,
        summary: op.summary ?? '',
        access,
        params,
        body: bodySchema ? resolve(doc, bodySchema) : undefined,
        bodyRequired: op.requestBody?.required ?? false,
        statuses,
        success,
        plainErrors,
        errorCodes,
      })
    }
  }
  return out
}

/** The path with its `{name}` parameters filled in (URL-encoded). */
export function fill(path: string, values: Record<string, string>): string {
  return path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = values[name]
    if (value === undefined) throw new Error(`no value for {${name}} in ${path}`)
    return encodeURIComponent(value)
  })
}

/** The names of the operation's parameters that sit in `where`. */
export const paramsIn = (op: Operation, where: Parameter['in']) => op.params.filter((p) => p.in === where)

/** Hono's pattern for an OpenAPI path: `/v1/orders/{id}` → `/v1/orders/:id`. */
export const honoPattern = (path: string) => path.replace(/\{(\w+)\}/g, ':$1')

/** Loads the document from the app it describes. */
export async function loadDocument(request: (path: string) => Promise<Response>): Promise<OpenApiDocument> {
  const res = await request('/openapi.json')
  if (res.status !== 200) throw new Error(`/openapi.json answered ${res.status}`)
  return (await res.json()) as OpenApiDocument
}

/** Every string, array and number inside a schema, with its dotted path, for static checks. */
export function walk(doc: OpenApiDocument, schema: JsonSchema, at: string, visit: (s: JsonSchema, path: string) => void, depth = 0) {
  if (depth > 20) return
  const s = resolve(doc, schema)
  visit(s, at)
  for (const [name, prop] of Object.entries(s.properties ?? {})) walk(doc, prop, `${at}.${name}`, visit, depth + 1)
  if (s.items) walk(doc, s.items, `${at}[]`, visit, depth + 1)
  for (const alt of [...(s.anyOf ?? []), ...(s.oneOf ?? []), ...(s.allOf ?? [])]) walk(doc, alt, at, visit, depth + 1)
}
