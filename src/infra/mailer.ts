import { eq } from 'drizzle-orm'
import type { Transaction } from '../db/database.ts'
import { emails } from '../db/schema.ts'
import { uuidv7 } from '../lib/uuid.ts'
import { answered, inSpan } from '../observability/tracing.ts'
import { createCircuitBreaker } from './circuit-breaker.ts'

export interface Email {
  to: string
  subject: string
  template: string
  text: string
  orderId?: string
  /** Derived from the job that sends it: one email per key, however often the job runs. */
  idempotencyKey: string
}

/**
 * Sends emails. Every sent email is also recorded in the `emails` table, in
 * the job's transaction (`GET /v1/admin/emails` lists them).
 */
export interface Mailer {
  readonly kind: 'recording' | 'http'
  send(email: Email, ctx: { tx: Transaction }): Promise<void>
}

async function alreadySent(tx: Transaction, key: string) {
  const [row] = await tx.select({ id: emails.id }).from(emails).where(eq(emails.idempotencyKey, key)).limit(1)
  return row !== undefined
}

async function record(tx: Transaction, email: Email, providerId: string | null) {
  await tx
    .insert(emails)
    .values({
      id: uuidv7(),
      idempotencyKey: email.idempotencyKey,
      to: email.to,
      subject: email.subject,
      template: email.template,
      orderId: email.orderId ?? null,
      providerId,
    })
    .onConflictDoNothing({ target: emails.idempotencyKey })
}

/** Development and tests: "sending" is recording. */
export function createRecordingMailer(): Mailer {
  return {
    kind: 'recording',
    async send(email, { tx }) {
      await record(tx, email, null)
    },
  }
}

/**
 * An HTTP email API in the common shape (`POST <url>` with `{ from, to,
 * subject, text }`, `Authorization: Bearer <key>`, `Idempotency-Key`), as
 * Resend and similar providers take it. Every call is bounded by `timeoutMs`,
 * and a circuit breaker stops calling a provider that keeps failing, so a
 * dead provider costs one quick failure per job, which is then retried with
 * backoff, instead of a timeout per job.
 */
export function createHttpMailer(opts: {
  url: string
  apiKey: string
  from: string
  timeoutMs: number
  circuitOpenMs: number
  fetch?: typeof fetch
}): Mailer {
  const breaker = createCircuitBreaker('email API', { failureThreshold: 5, openMs: opts.circuitOpenMs })
  const doFetch = opts.fetch ?? fetch
  const host = new URL(opts.url).host
  return {
    kind: 'http',
    async send(email, { tx }) {
      if (await alreadySent(tx, email.idempotencyKey)) return
      const providerId = await breaker.run(() =>
        inSpan('email API send', { 'http.request.method': 'POST', 'server.address': host }, async (span) => {
          const res = await doFetch(opts.url, {
            method: 'POST',
            headers: {
              'Content-Type': 'application/json',
              Authorization: `Bearer ${opts.apiKey}`,
              'Idempotency-Key': email.idempotencyKey,
            },
            body: JSON.stringify({ from: opts.from, to: [email.to], subject: email.subject, text: email.text }),
            signal: AbortSignal.timeout(opts.timeoutMs),
          })
          answered(span, res.status)
          const text = await res.text()
          if (!res.ok) throw new Error(`email API answered ${res.status}`)
          try {
            const id = (JSON.parse(text) as { id?: unknown }).id
            return typeof id === 'string' ? id : null
          } catch {
            return null
          }
        }),
      )
      await record(tx, email, providerId)
    },
  }
}
