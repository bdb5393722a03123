import { and, eq } from 'drizzle-orm'
import { orders, users } from '../../db/schema.ts'
import type { Cache } from '../../infra/cache.ts'
import type { JobContext, JobHandler } from '../../infra/jobs/jobs.ts'
import type { Mailer } from '../../infra/mailer.ts'
import type { PaymentProvider } from '../../infra/payments.ts'
import type { Logger } from '../../observability/logger.ts'
import { PRODUCTS, productKey } from '../catalog/index.ts'
import { type ChangedProduct, expireOrders } from './service.ts'

/** What the order jobs need. */
export interface OrderJobServices {
  payments: PaymentProvider
  mailer: Mailer
  cache: Cache
  logger: Logger
}

type Ctx = JobContext<OrderJobServices>

/** After stock moved: the products' cache entries go once the transaction has committed. */
function invalidateAfterCommit(ctx: Ctx, changed: ChangedProduct[]) {
  if (changed.length === 0) return
  ctx.afterCommit(() =>
    Promise.all([
      ...changed.map((p) => ctx.deps.cache.invalidateEntity(productKey(p.id), p.version)),
      ctx.deps.cache.invalidateCollection(PRODUCTS),
    ]),
  )
}

const payload = (ctx: Ctx) => ctx.job.payload as { orderId: string; paymentToken?: string }

/** `order.expire`: at the order's deadline, expire it if it is still unpaid (a paid order makes this a no-op). */
const expireOrder: JobHandler<OrderJobServices> = async (ctx) => {
  const { changed } = await expireOrders(ctx.tx, { orderId: payload(ctx).orderId })
  invalidateAfterCommit(ctx, changed)
}

/**
 * `payment.capture`: asks the provider to capture, with this job's id as the
 * idempotency key, and moves the order to `paid` (queueing its confirmation
 * email) or `payment_failed`. A transient failure throws: the job is retried.
 */
const capturePayment: JobHandler<OrderJobServices> = async (ctx) => {
  const { orderId, paymentToken } = payload(ctx)
  const [order] = await ctx.tx
    .select()
    .from(orders)
    .where(and(eq(orders.id, orderId), eq(orders.status, 'payment_processing')))
    .limit(1)
  if (!order) return
  const result = await ctx.deps.payments.capture(
    {
      idempotencyKey: `capture:${ctx.job.id}`,
      token: paymentToken ?? '',
      amountCents: order.totalCents,
      currency: order.currency,
      orderId,
    },
    { tx: ctx.tx },
  )
  const now = new Date()
  if (result.status === 'captured') {
    const [paid] = await ctx.tx
      .update(orders)
      .set({ status: 'paid', updatedAt: now })
      .where(and(eq(orders.id, orderId), eq(orders.status, 'payment_processing')))
      .returning({ id: orders.id })
    if (paid) await ctx.enqueue({ name: 'email.order_paid', payload: { orderId }, maxAttempts: 8 })
  } else {
    await ctx.tx
      .update(orders)
      .set({ status: 'payment_failed', updatedAt: now })
      .where(and(eq(orders.id, orderId), eq(orders.status, 'payment_processing')))
    ctx.deps.logger.info('payment declined', { orderId, reason: result.reason })
  }
}

/** `email.order_paid`: the confirmation email, at most one per order (its idempotency key is the order's). */
const sendOrderPaid: JobHandler<OrderJobServices> = async (ctx) => {
  const { orderId } = payload(ctx)
  const [row] = await ctx.tx
    .select({ email: users.email, name: users.name, total: orders.totalCents, currency: orders.currency })
    .from(orders)
    .innerJoin(users, eq(users.id, orders.userId))
    .where(eq(orders.id, orderId))
    .limit(1)
  if (!row) return
  const amount = `${(row.total / 100).toFixed(2)} ${row.currency}`
  await ctx.deps.mailer.send(
    {
      to: row.email,
      subject: `Your order ${orderId.slice(0, 8)} is paid`,
      template: 'order_paid',
      text: `Hello ${row.name},\n\nwe received ${amount} for order ${orderId}. We will let you know when it ships.\n`,
      orderId,
      idempotencyKey: `${ctx.job.name}:${orderId}`,
    },
    { tx: ctx.tx },
  )
}

export const orderJobHandlers: Record<string, JobHandler<OrderJobServices>> = {
  'order.expire': expireOrder,
  'payment.capture': capturePayment,
  'email.order_paid': sendOrderPaid,
}
