import { z } from '@hono/zod-openapi'
import { PageQuery } from '../../http/page.ts'
import { text } from '../../http/text.ts'

export const Product = z
  .object({
    id: z.uuid(),
    sku: z.string(),
    name: z.string(),
    description: z.string(),
    priceCents: z.number().int().openapi({ description: 'Price in minor units of `currency`.', example: 1999 }),
    currency: z.string().openapi({ description: 'ISO 4217; the store has one currency (`STORE_CURRENCY`).', example: 'USD' }),
    stock: z.number().int(),
    category: z.string(),
    active: z.boolean(),
    version: z
      .number()
      .int()
      .openapi({ description: 'Bumped by every change (edits and stock taken or released by orders); the ETag is `"<version>"`.' }),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Product')

export const ProductPage = z
  .object({
    items: z.array(Product),
    nextCursor: z.string().nullable().openapi({ description: 'Pass as `cursor` for the next page; null on the last page.' }),
  })
  .openapi('ProductPage')

const sku = text({
  min: 1,
  max: 64,
  pattern: /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
  message: 'may hold letters, digits, dots, dashes and underscores',
})
const category = text({ min: 1, max: 50, pattern: /^[a-z0-9][a-z0-9-]*$/, message: 'must be lower-case letters, digits and dashes' })
const name = text({ min: 1, max: 200, trim: true })
const description = text({ max: 5000 })
const priceCents = z.number().int('must be a whole number of minor units').min(0).max(100_000_000)
const stock = z.number().int('must be a whole number').min(0).max(1_000_000_000)

export const CreateProduct = z
  .strictObject({ sku, name, description: description.default(''), priceCents, stock, category, active: z.boolean().default(true) })
  .openapi('CreateProduct', { description: 'The currency is the store’s; it cannot be chosen per product.' })

export const UpdateProduct = z
  .strictObject({
    sku: sku.optional(),
    name: name.optional(),
    description: description.optional(),
    priceCents: priceCents.optional(),
    stock: stock.optional(),
    category: category.optional(),
    active: z.boolean().optional(),
  })
  .refine((v) => Object.keys(v).length > 0, 'name at least one field to change')
  .openapi('UpdateProduct', { minProperties: 1 })

export const ListQuery = PageQuery.extend({
  category: category.optional(),
  q: text({ min: 1, max: 100, trim: true, description: 'Matches name or SKU, case-insensitively.' }).optional(),
})

export const ProductId = z.object({
  id: z.string().openapi({ format: 'uuid', description: 'An id that is not a UUID is simply unknown (404).' }),
})

export type CreateProductInput = z.output<typeof CreateProduct>
export type UpdateProductInput = z.output<typeof UpdateProduct>
export type ListQueryInput = z.output<typeof ListQuery>
