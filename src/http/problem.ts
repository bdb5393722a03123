import type { Context } from 'hono'
import { type AppError, ERROR_CODES, type ErrorCode, type FieldError } from '../core/errors.ts'

/** The body of an error answer. */
export interface Problem {
  type: string
  title: string
  status: number
  detail?: string
  code: ErrorCode
  requestId: string
  errors?: FieldError[]
}

/** The `type` URI of a code: a section of the API reference at `/docs`. */
export const problemType = (code: ErrorCode) => `/docs#error-${code}`

export function toProblem(err: AppError, requestId: string): Problem {
  const body: Problem = {
    type: problemType(err.code),
    title: ERROR_CODES[err.code].title,
    status: err.status,
    code: err.code,
    requestId,
  }
  if (err.detail !== undefined) body.detail = err.detail
  if (err.errors !== undefined) body.errors = err.errors
  return body
}

/** Renders an {@link AppError} as `application/problem+json`, with the headers its status requires. */
export function problemResponse(c: Context, err: AppError): Response {
  const requestId = (c.get('requestId') as string | undefined) ?? ''
  const headers: Record<string, string> = { 'Content-Type': 'application/problem+json', 'Cache-Control': 'no-store' }
  if (err.status === 401) headers['WWW-Authenticate'] = 'Bearer'
  if (err.status === 503 || err.status === 429) headers['Retry-After'] = '1'
  if (err.headers) Object.assign(headers, err.headers)
  return c.newResponse(JSON.stringify(toProblem(err, requestId)), err.status as 400, headers)
}
