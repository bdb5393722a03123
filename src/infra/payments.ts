import { eq } from 'drizzle-orm'
import type { Transaction } from '../db/database.ts'
import { simulatedCharges } from '../db/schema.ts'
import { inSpan } from '../observability/tracing.ts'

/** A failure worth retrying: the provider may succeed on a later attempt with the same idempotency key. */
export class TransientPaymentError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TransientPaymentError'
  }
}

export type CaptureResult = { status: 'captured'; reference: string } | { status: 'declined'; reason: string }

export interface CaptureRequest {
  /** Derived from the job: the provider captures at most once per key, however often it is asked. */
  idempotencyKey: string
  token: string
  amountCents: number
  currency: string
  orderId: string
}

/** Takes payments. `tx` is the job's transaction, for providers whose records live in this database. */
export interface PaymentProvider {
  readonly name: string
  capture(request: CaptureRequest, ctx: { tx: Transaction }): Promise<CaptureResult>
}

/**
 * The `simulated` provider of the API contract: `tok_ok` captures,
 * `tok_declined` is a permanent decline, `tok_flaky` fails transiently on its
 * first two attempts (counted per idempotency key, in this process) and then
 * captures; any other token is declined. Its ledger, one row per idempotency
 * key, is what a real provider keeps on its side: asking again with the same
 * key answers the first outcome.
 */
export function createSimulatedPaymentProvider(): PaymentProvider {
  const flakyAttempts = new Map<string, number>()
  return {
    name: 'simulated',
    async capture(req, { tx }) {
      const [seen] = await tx.select().from(simulatedCharges).where(eq(simulatedCharges.idempotencyKey, req.idempotencyKey)).limit(1)
      if (seen)
        return seen.status === 'captured' ? { status: 'captured', reference: seen.reference } : { status: 'declined', reason: 'declined' }
      if (req.token === 'tok_flaky') {
        const attempt = (flakyAttempts.get(req.idempotencyKey) ?? 0) + 1
        flakyAttempts.set(req.idempotencyKey, attempt)
        if (flakyAttempts.size > 10_000) flakyAttempts.delete(flakyAttempts.keys().next().value!)
        if (attempt <= 2) throw new TransientPaymentError(`simulated provider unavailable (attempt ${attempt})`)
      }
      const captured = req.token === 'tok_ok' || req.token === 'tok_flaky'
      const reference = `sim_${crypto.randomUUID().replace(/-/g, '').slice(0, 20)}`
      await tx.insert(simulatedCharges).values({
        idempotencyKey: req.idempotencyKey,
        reference,
        token: req.token,
        amountCents: req.amountCents,
        currency: req.currency,
        status: captured ? 'captured' : 'declined',
      })
      flakyAttempts.delete(req.idempotencyKey)
      return captured
        ? { status: 'captured', reference }
        : { status: 'declined', reason: req.token === 'tok_declined' ? 'card declined' : 'unknown payment token' }
    },
  }
}

/**
 * The provider with a span around each capture (`payment capture`, the
 * provider's name and the outcome; never the token or the amount).
 *
 * @example
 * ```ts
 * const payments = tracedPayments(createSimulatedPaymentProvider())
 * ```
 */
export function tracedPayments(provider: PaymentProvider): PaymentProvider {
  return {
    name: provider.name,
    capture: (request, ctx) =>
      inSpan('payment capture', { 'payment.provider': provider.name }, async (span) => {
        const result = await provider.capture(request, ctx)
        span.setAttribute('payment.outcome', result.status)
        return result
      }),
  }
}
