import { z } from '@hono/zod-openapi'
import { ERROR_CODES, type ErrorCode } from '../core/errors.ts'

/** RFC 9457 problem details, as every error answer carries them. */
export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: '/docs#error-validation_failed' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    code: z.enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]]).openapi({ description: 'Stable machine code; match on this.' }),
    requestId: z.string(),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .openapi({ description: 'Every bad field, for `validation_failed` and `insufficient_stock`.' }),
  })
  .openapi('Problem')

const problemContent = { 'application/problem+json': { schema: ProblemSchema } }

/**
 * The error answers of a route, grouped by status, each listing its codes.
 *
 * @example
 * ```ts
 * responses: { 200: json(Product, 'The product'), ...problems('not_found', 'validation_failed') }
 * ```
 */
export function problems(...codes: ErrorCode[]) {
  const byStatus: Record<number, ErrorCode[]> = {}
  for (const code of [...codes, 'internal_error'] as ErrorCode[]) {
    const status = ERROR_CODES[code].status
    const list = (byStatus[status] ??= [])
    if (!list.includes(code)) list.push(code)
  }
  const out: Record<number, { description: string; content: typeof problemContent }> = {}
  for (const [status, list] of Object.entries(byStatus)) {
    out[Number(status)] = {
      description: list.map((code) => `\`${code}\`: ${ERROR_CODES[code].title}`).join('; '),
      content: problemContent,
    }
  }
  return out
}

/** A JSON response of a route, with an example answer when given (`/docs` shows it). */
export const json = <T extends z.ZodType>(schema: T, description: string, example?: z.output<T>) => ({
  description,
  content: { 'application/json': { schema, ...(example === undefined ? {} : { example }) } },
})

/** A required JSON request body, with an example when given (`/docs` shows it). */
export const jsonBody = <T extends z.ZodType>(schema: T, example?: z.input<T>) => ({
  required: true,
  content: { 'application/json': { schema, ...(example === undefined ? {} : { example }) } },
})
