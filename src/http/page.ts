import { z } from '@hono/zod-openapi'
import { text } from './text.ts'

/** A whole number in a query string: decimal digits only (`1e1`, ` 5` or `0x10` stay text and are refused). */
const wholeNumber = (v: unknown) => (typeof v === 'string' && /^-?[0-9]+$/.test(v) ? Number(v) : v)

/** The largest page any list answers. */
export const MAX_PAGE = 100

/** `limit` and `cursor`, the query of every list. */
export const PageQuery = z.object({
  limit: z
    .preprocess(
      wholeNumber,
      z
        .number({ error: 'must be a whole number' })
        .int('must be a whole number')
        .min(1, 'must be at least 1')
        .max(MAX_PAGE, `must be at most ${MAX_PAGE}`),
    )
    .default(20)
    .openapi({ description: `1 to ${MAX_PAGE}.` }),
  cursor: text({
    min: 22,
    max: 22,
    pattern: /^[A-Za-z0-9_-]{22}$/,
    message: 'is not a cursor from this API',
    description: 'The `nextCursor` of the previous page.',
  }).optional(),
})
