import { z } from '@hono/zod-openapi'
import { IDEMPOTENCY_KEY } from '../../http/idempotency.ts'
import { text, UUID } from '../../http/text.ts'

export const OrderItem = z.object({
  productId: z.uuid(),
  sku: z.string(),
  name: z.string(),
  unitPriceCents: z.number().int(),
  quantity: z.number().int(),
  lineTotalCents: z.number().int(),
})

export const Order = z
  .object({
    id: z.uuid(),
    status: z.enum(['pending_payment', 'payment_processing', 'paid', 'fulfilled', 'payment_failed', 'cancelled', 'expired']),
    items: z.array(OrderItem),
    totalCents: z.number().int(),
    currency: z.string(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
    expiresAt: z.iso.datetime().openapi({ description: 'An unpaid order expires then, and its stock is released.' }),
  })
  .openapi('Order')

export const OrderPage = z.object({ items: z.array(Order), nextCursor: z.string().nullable() }).openapi('OrderPage')

/** The most lines one order holds. */
export const MAX_ORDER_LINES = 50

export const CreateOrder = z
  .strictObject({
    items: z
      .array(
        z.strictObject({
          // Lower-cased: the database reads any case, and the lines are matched, deduplicated and cached by this text.
          productId: text({ pattern: UUID, message: 'must be a product id' })
            .openapi({ format: 'uuid' })
            .transform((id) => id.toLowerCase()),
          quantity: z.number().int('must be a whole number').min(1, 'must be at least 1').max(100, 'must be at most 100'),
        }),
      )
      .min(1, 'must hold at least one line')
      .max(MAX_ORDER_LINES, `must hold at most ${MAX_ORDER_LINES} lines`)
      .refine((lines) => new Set(lines.map((l) => l.productId)).size === lines.length, 'each product may appear once'),
  })
  .openapi('CreateOrder', {
    description:
      'Prices come from the catalog, never from the request. Each product may appear in one line only (400 `validation_failed` otherwise: JSON Schema cannot say this of one property of the lines). An order whose total would pass 2,147,483,647 minor units is refused the same way.',
  })

export const PayOrder = z
  .strictObject({
    paymentToken: text({
      min: 1,
      max: 200,
      description: 'From the payment provider. The `simulated` provider takes `tok_ok`, `tok_declined` and `tok_flaky`.',
    }),
  })
  .openapi('PayOrder')

export const IdempotencyHeaders = z.object({ 'idempotency-key': IDEMPOTENCY_KEY })

export const OrderId = z.object({ id: z.string().openapi({ format: 'uuid' }) })
