import type { Context } from 'hono'
import type { ZodError } from 'zod'
import { AppError, type FieldError } from '../core/errors.ts'

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

/**
 * The default hook of every OpenAPI route: a failed parse becomes 400
 * `validation_failed` listing every bad field. What a field may hold — U+0000
 * and unpaired surrogates are refused in every string — is its schema's own
 * rule (`text()` in `text.ts`), the same rule the OpenAPI document declares.
 */
export function validationHook(result: { success: boolean; error?: unknown; target: string }, _c: Context): void {
  if (result.success) return
  throw new AppError('validation_failed', 'Some fields are missing or invalid', {
    errors: fieldErrors(result.error as ZodError, result.target),
  })
}
