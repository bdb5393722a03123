import type { Context } from 'hono'
import type { ZodError } from 'zod'
import { AppError, type FieldError } from './problem.ts'

const TARGET: Record<string, string> = { json: 'body', form: 'body', query: 'query', param: 'params', header: 'headers', cookie: 'cookies' }

/** Lists every issue of a failed parse as `{ path, message }`, the path prefixed with where the field is. */
export function fieldErrors(error: ZodError, target: string): FieldError[] {
  const where = TARGET[target] ?? target
  return error.issues.flatMap((issue) => {
    const at = [where, ...issue.path.map(String)]
    if (issue.code === 'unrecognized_keys')
      return issue.keys.map((key) => ({ path: [...at, key].join('.'), message: 'is not a known field' }))
    return [{ path: at.join('.'), message: issue.message }]
  })
}

/** The paths of the strings in `value` that hold U+0000, which PostgreSQL cannot store in `text` or `jsonb`. */
function nulStrings(value: unknown, at: string, out: FieldError[]): FieldError[] {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) out.push({ path: at, message: 'must not contain the NUL character (U+0000)' })
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) nulStrings(value[i], `${at}.${i}`, out)
  } else if (value !== null && typeof value === 'object') {
    for (const [key, v] of Object.entries(value)) nulStrings(v, `${at}.${key}`, out)
  }
  return out
}

/**
 * The default hook of every OpenAPI route: a failed parse becomes 400
 * `validation_failed` listing every bad field. A body or query that parsed is
 * refused the same way when one of its strings holds U+0000: the database
 * would refuse it later, as an error instead of an answer. (Path ids are not
 * text to the database: one that is not a UUID is simply unknown, 404.)
 */
export function validationHook(result: { success: boolean; error?: unknown; data?: unknown; target: string }, _c: Context): void {
  if (result.success) {
    if (result.target !== 'json' && result.target !== 'query') return
    const nul = nulStrings(result.data, TARGET[result.target]!, [])
    if (nul.length > 0) throw new AppError('validation_failed', 'Some fields are missing or invalid', { errors: nul })
    return
  }
  throw new AppError('validation_failed', 'Some fields are missing or invalid', {
    errors: fieldErrors(result.error as ZodError, result.target),
  })
}
