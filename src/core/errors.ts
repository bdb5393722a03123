/*
 * The error vocabulary of the domain: every code an answer can carry and the
 * one error type that carries it. HTTP renders it (src/http/problem.ts); the
 * features and the layers below them only throw it.
 */

/**
 * Every machine code an answer can carry, with its HTTP status and title.
 * Clients and tests match on `code`; a code never changes meaning.
 */
export const ERROR_CODES = {
  invalid_json: { status: 400, title: 'The request body is not valid JSON' },
  validation_failed: { status: 400, title: 'The request does not match the schema' },
  idempotency_key_missing: { status: 400, title: 'An Idempotency-Key header is required' },
  query_too_complex: { status: 400, title: 'The GraphQL query is over a limit (depth, aliases, tokens, cost or statements)' },
  unauthorized: { status: 401, title: 'Authentication is required' },
  invalid_credentials: { status: 401, title: 'Email or password is wrong' },
  refresh_token_reused: { status: 401, title: 'This refresh token was already used; its family is revoked' },
  invalid_signature: { status: 401, title: 'The delivery signature is missing or invalid' },
  forbidden: { status: 403, title: 'Not allowed' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  email_taken: { status: 409, title: 'An account with this email exists' },
  sku_taken: { status: 409, title: 'A product with this SKU exists' },
  insufficient_stock: { status: 409, title: 'Not enough stock' },
  invalid_state: { status: 409, title: 'The order is not in a state that allows this' },
  idempotency_request_in_progress: { status: 409, title: 'A request with this Idempotency-Key is still running' },
  version_mismatch: { status: 412, title: 'The resource changed since you read it' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'The request body must be application/json' },
  unknown_product: { status: 422, title: 'A product does not exist or is archived' },
  idempotency_key_reused: { status: 422, title: 'This Idempotency-Key was used with a different request' },
  rate_limited: { status: 429, title: 'Too many requests' },
  too_many_streams: { status: 429, title: 'Too many event streams are open' },
  internal_error: { status: 500, title: 'Internal error' },
  bad_configuration: { status: 500, title: 'The service is misconfigured' },
  service_unavailable: { status: 503, title: 'A dependency is unavailable; retry later' },
} as const satisfies Record<string, { status: number; title: string }>

export type ErrorCode = keyof typeof ERROR_CODES

/** One bad field of a request. `path` is dotted and starts with where the field is (`body`, `query`, `params`, `headers`). */
export interface FieldError {
  path: string
  message: string
}

/**
 * The one error type of the domain. Throw it anywhere; `onError` renders it
 * as RFC 9457 problem details.
 *
 * @example
 * ```ts
 * throw new AppError('not_found', 'No product with this id')
 * ```
 */
export class AppError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly detail: string | undefined
  readonly errors: FieldError[] | undefined
  readonly headers: Record<string, string> | undefined

  constructor(code: ErrorCode, detail?: string, opts: { errors?: FieldError[]; headers?: Record<string, string>; cause?: unknown } = {}) {
    super(detail ?? ERROR_CODES[code].title, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'AppError'
    this.code = code
    this.status = ERROR_CODES[code].status
    this.detail = detail
    this.errors = opts.errors
    this.headers = opts.headers
  }
}
