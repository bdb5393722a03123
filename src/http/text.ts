import { z } from '@hono/zod-openapi'

/*
 * The strings a client sends, as zod schemas that carry their own rule into
 * the OpenAPI document: the regex a schema enforces is the `pattern` the
 * document declares (only a schema's first regex is documented, so each has
 * exactly one), and lengths count characters (code points), as JSON Schema's
 * `minLength`/`maxLength` do, not UTF-16 code units.
 */

/**
 * Text: any Unicode text but U+0000, which PostgreSQL cannot store, and
 * unpaired UTF-16 surrogates, which are not text at all. JSON's `\ud800`
 * escape yields one, and UTF-8 encoding turns every one into U+FFFD, so
 * different strings would be stored, compared and hashed as one. The
 * pattern means the same with and without the regex `u` flag.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what the pattern refuses
export const TEXT = /^(?:[^\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])*$/

/** {@link TEXT} with at least one character that is not white space. */
export const NON_BLANK_TEXT =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what the pattern refuses
  /^\s*(?:[^\s\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])(?:[^\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])*$/

/** A UUID in any case (the database reads any case; JSON Schema's `format: uuid` allows it). */
export const UUID = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/

/** The number of characters (code points) of a string: a surrogate pair is one. */
export function codePoints(s: string): number {
  let n = s.length
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c < 0xdc00) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d < 0xe000) {
        n--
        i++
      }
    }
  }
  return n
}

/** Which part of {@link NON_BLANK_TEXT} a string breaks, for the field's error. */
function textFault(input: unknown): string {
  const s = String(input)
  if (s.includes('\u0000')) return 'must not contain the NUL character (U+0000)'
  if (!TEXT.test(s)) return 'must not contain an unpaired UTF-16 surrogate (U+D800 to U+DFFF)'
  return 'must not be blank'
}

export interface TextRule {
  /** Fewest characters (code points); default 0. */
  min?: number
  /** Most characters (code points). */
  max?: number
  /** The whole rule for the characters, instead of {@link TEXT}; it must refuse U+0000 and unpaired surrogates too. */
  pattern?: RegExp
  /** The error when `pattern` refuses a value. */
  message?: string
  /** Refuse blank text, and remove leading and trailing white space once the value passed (the lengths count what was sent). */
  trim?: boolean
  description?: string
}

/**
 * A string a client sends, with its whole rule declared: lengths in
 * characters, and a pattern ({@link TEXT} unless given) that the OpenAPI
 * document shows as it is enforced.
 *
 * @example
 * ```ts
 * const name = text({ min: 1, max: 200, trim: true })       // no NUL, no lone surrogate, not blank
 * const sku = text({ min: 1, max: 64, pattern: /^[A-Z0-9-]+$/, message: 'letters, digits and dashes' })
 * ```
 */
export function text(rule: TextRule = {}) {
  const { min = 0, max, pattern, message, trim = false, description } = rule
  let schema = z.string()
  if (min > 0)
    schema = schema.refine((v) => codePoints(v) >= min, {
      error: min === 1 ? 'must not be empty' : `must be at least ${min} characters`,
      abort: true,
    })
  if (max !== undefined)
    schema = schema.refine((v) => v.length <= max || codePoints(v) <= max, { error: `must be at most ${max} characters`, abort: true })
  schema = schema.regex(pattern ?? (trim ? NON_BLANK_TEXT : TEXT), { error: (issue) => message ?? textFault(issue.input) })
  if (trim) schema = schema.trim()
  const said = trim ? `${description ? `${description} ` : ''}Leading and trailing white space is removed.` : description
  return schema.openapi({ ...(min > 0 ? { minLength: min } : {}), ...(max !== undefined ? { maxLength: max } : {}), description: said })
}
