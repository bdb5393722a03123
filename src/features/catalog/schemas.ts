import { z } from '@hono/zod-openapi'

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

const sku = z
  .string()
  .min(1, 'must not be empty')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'may hold letters, digits, dots, dashes and underscores')
const category = z
  .string()
  .min(1, 'must not be empty')
  .max(50, 'must be at most 50 characters')
  .regex(/^[a-z0-9][a-z0-9-]*$/, 'must be lower-case letters, digits and dashes')
const name = z.string().trim().min(1, 'must not be empty').max(200, 'must be at most 200 characters')
const description = z.string().max(5000, 'must be at most 5000 characters')
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
  .openapi('UpdateProduct')

export const ListQuery = z.object({
  limit: z.coerce.number().int('must be a whole number').min(1).max(100).default(20).openapi({ description: '1 to 100.' }),
  cursor: z.string().max(64).optional().openapi({ description: 'The `nextCursor` of the previous page.' }),
  category: category.optional(),
  q: z.string().trim().min(1).max(100).optional().openapi({ description: 'Matches name or SKU, case-insensitively.' }),
})

export const ProductId = z.object({
  id: z.string().openapi({ format: 'uuid', description: 'An id that is not a UUID is simply unknown (404).' }),
})

export type CreateProductInput = z.output<typeof CreateProduct>
export type UpdateProductInput = z.output<typeof UpdateProduct>
export type ListQueryInput = z.output<typeof ListQuery>
