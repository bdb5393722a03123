import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi'
import { Receiver } from '@upstash/qstash'
import { and, desc, eq, lt, sql } from 'drizzle-orm'
import type { Context } from 'hono'
import { AppError } from '../../core/errors.ts'
import { encodeCursor } from '../../core/page.ts'
import { emails, JOB_STATUSES, jobs } from '../../db/schema.ts'
import { authenticate, requireRole } from '../../http/auth.ts'
import type { AppEnv, HttpServices, RequestScope } from '../../http/context.ts'
import { json, problems } from '../../http/openapi.ts'
import { PageQuery } from '../../http/page.ts'
import { text } from '../../http/text.ts'
import { JOB_FAILURES_PATH, jobPath, markDead } from '../../infra/jobs/dispatch.ts'
import type { JobRef, RunOutcome } from '../../infra/jobs/jobs.ts'
import type { Slots } from '../../lib/slots.ts'
import { isUuid } from '../../lib/uuid.ts'
import { DAILY, MINUTELY, runSchedule, type ScheduleEnv } from '../schedule/index.ts'
import { cursorOf, jobJson, listJobs } from './service.ts'

const Job = z
  .object({
    id: z.uuid(),
    name: z.string(),
    status: z.enum(JOB_STATUSES),
    attempts: z.number().int(),
    lastError: z.string().nullable(),
    traceId: z.string().nullable().openapi({
      description: 'The trace the job belongs to (that of the request or job that queued it), when it was sampled; null otherwise.',
    }),
    runAt: z.iso.datetime(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Job')
const JobPage = z.object({ items: z.array(Job), nextCursor: z.string().nullable() }).openapi('JobPage')
const Email = z
  .object({
    id: z.uuid(),
    to: z.string(),
    subject: z.string(),
    template: z.string(),
    orderId: z.uuid().nullable(),
    sentAt: z.iso.datetime(),
  })
  .openapi('Email')
const EmailPage = z.object({ items: z.array(Email), nextCursor: z.string().nullable() }).openapi('EmailPage')

/** How long a delivery waits for one of the instance's job slots before it asks QStash to come back later. */
const DELIVERY_WAIT_MS = 10_000

const signature = z.object({ 'upstash-signature': text({ description: 'QStash’s JWT over the raw body and this URL.' }).optional() })
/** QStash's signature: these routes take no other credentials. */
const signed = [{ upstashSignature: [] }]
const delivered = z.object({ status: z.enum(['done', 'already finished']) })

const deliveryRoute = createRoute({
  method: 'post',
  path: '/internal/jobs/{name}',
  operationId: 'deliverJob',
  tags: ['Internal'],
  summary: 'A job delivered by QStash',
  description:
    'Only QStash calls this: `Upstash-Signature` is verified against the raw body and this URL with the current and the next signing key (401 `invalid_signature` otherwise, and nothing runs). 2xx once handled (a job that already finished is a no-op); 503 asks QStash to retry. At most `JOB_CONCURRENCY` deliveries run at once per instance; the others wait up to 10 s for a turn, then get 503.',
  // The body is documented with a plain schema, not zod: a validator would parse it before the signature is checked against the raw bytes.
  security: signed,
  request: {
    params: z.object({ name: text({ min: 1 }) }),
    headers: signature,
    body: {
      content: {
        'application/json': { schema: { type: 'object', required: ['jobId'], properties: { jobId: { type: 'string', format: 'uuid' } } } },
      },
    },
  },
  responses: { 200: json(delivered, 'Handled'), ...problems('invalid_signature', 'validation_failed', 'service_unavailable') },
})

const failureRoute = createRoute({
  method: 'post',
  path: JOB_FAILURES_PATH,
  operationId: 'recordJobFailure',
  tags: ['Internal'],
  summary: 'QStash gave up on a job',
  description: 'QStash’s failure callback, signed like a delivery: the job becomes `dead`; an admin can queue it again.',
  security: signed,
  request: { headers: signature },
  responses: { 200: json(z.object({ dead: z.number().int() }), 'Recorded'), ...problems('invalid_signature', 'validation_failed') },
})

const scheduleRoute = createRoute({
  method: 'post',
  path: '/internal/schedules/{schedule}',
  operationId: 'runSchedule',
  tags: ['Internal'],
  summary: 'A schedule tick from a QStash schedule',
  description:
    'For deployments that tick with QStash schedules instead of cron triggers: `minutely` (`* * * * *`) and `daily` (`0 3 * * *`). Signed like a delivery. A tick runs once per slot, whoever else ticks.',
  security: signed,
  request: { params: z.object({ schedule: z.enum(['minutely', 'daily']) }), headers: signature },
  responses: {
    200: json(z.object({ ran: z.boolean() }).passthrough(), 'The tick’s report'),
    ...problems('invalid_signature', 'validation_failed'),
  },
})

const listJobsRoute = createRoute({
  method: 'get',
  path: '/v1/admin/jobs',
  operationId: 'listJobs',
  tags: ['Admin'],
  summary: 'Background jobs, newest first (admin)',
  security: [{ bearerAuth: [] }],
  request: { query: PageQuery.extend({ status: z.enum(JOB_STATUSES).optional() }) },
  responses: { 200: json(JobPage, 'A page of jobs'), ...problems('validation_failed', 'unauthorized', 'forbidden') },
})

const retryRoute = createRoute({
  method: 'post',
  path: '/v1/admin/jobs/{id}/retry',
  operationId: 'retryJob',
  tags: ['Admin'],
  summary: 'Queue a dead job again (admin)',
  description: 'Its attempts start from zero; its last error is kept until it runs.',
  security: [{ bearerAuth: [] }],
  request: { params: z.object({ id: z.string().openapi({ format: 'uuid' }) }) },
  responses: { 202: json(Job, 'Queued'), ...problems('not_found', 'invalid_state', 'unauthorized', 'forbidden') },
})

const emailsRoute = createRoute({
  method: 'get',
  path: '/v1/admin/emails',
  operationId: 'listEmails',
  tags: ['Admin'],
  summary: 'Emails the mailer sent, newest first (admin)',
  security: [{ bearerAuth: [] }],
  request: { query: PageQuery },
  responses: { 200: json(EmailPage, 'A page of emails'), ...problems('validation_failed', 'unauthorized', 'forbidden') },
})

/** What the jobs routes use: the HTTP layer's services, the job slots and runs, the schedule. */
export interface JobRouteServices extends HttpServices {
  readonly jobSlots: Slots
  runJob(scope: RequestScope, id: string): Promise<RunOutcome>
  dispatch(scope: RequestScope, jobs: JobRef[]): void
  schedule(scope: RequestScope): ScheduleEnv
}

/** QStash deliveries, the failure callback, schedule ticks, and the admin views of jobs and emails. */
export function jobRoutes(services: JobRouteServices) {
  const { config } = services
  const receiver = config.qstash
    ? new Receiver({ currentSigningKey: config.qstash.currentSigningKey, nextSigningKey: config.qstash.nextSigningKey })
    : undefined

  /** The raw body, once its signature checks out for this URL. */
  async function verified(c: Context<AppEnv>): Promise<string> {
    const body = await c.req.text()
    const sig = c.req.header('upstash-signature')
    const ok =
      receiver !== undefined &&
      sig !== undefined &&
      (await receiver.verify({ signature: sig, body, url: `${config.publicUrl}${c.req.path}`, clockTolerance: 5 }).catch(() => false))
    if (!ok) throw new AppError('invalid_signature', 'A valid Upstash-Signature for this URL and body is required')
    return body
  }
  const admin = [authenticate(services), requireRole('admin')]

  return new OpenAPIHono<AppEnv>()
    .openapi(deliveryRoute, async (c) => {
      const body = await verified(c)
      let jobId: unknown
      try {
        jobId = (JSON.parse(body) as { jobId?: unknown }).jobId
      } catch {}
      if (typeof jobId !== 'string' || !isUuid(jobId)) throw new AppError('validation_failed', 'The body must be { "jobId": "<uuid>" }')
      // A job holds a pooled connection for its whole run; without a bound, QStash catching up after an outage
      // would run hundreds at once and leave customers' requests waiting for a connection.
      const release = await services.jobSlots.acquire(DELIVERY_WAIT_MS)
      if (!release) throw new AppError('service_unavailable', 'Every job slot of this instance stayed busy; retry')
      try {
        const [job] = await c.get('scope').db.select({ name: jobs.name }).from(jobs).where(eq(jobs.id, jobId)).limit(1)
        if (!job || jobPath(job.name) !== c.req.path) throw new AppError('validation_failed', 'No such job at this path')
        const outcome = await services.runJob(c.get('scope'), jobId)
        if (outcome.kind === 'failed') throw new AppError('service_unavailable', 'The job failed; retry')
        return c.json({ status: outcome.kind === 'done' ? ('done' as const) : ('already finished' as const) }, 200)
      } finally {
        release()
      }
    })
    .openapi(failureRoute, async (c) => {
      const body = await verified(c)
      let source: unknown
      try {
        const payload = JSON.parse(body) as { sourceBody?: string }
        source = JSON.parse(atob(payload.sourceBody ?? '')).jobId
      } catch {}
      if (typeof source !== 'string') throw new AppError('validation_failed', 'Not a QStash failure callback for a job')
      const dead = await markDead(c.get('scope').db, [source], 'QStash gave up delivering this job')
      services.logger.warn('job dead after its last delivery', { jobId: source })
      return c.json({ dead }, 200)
    })
    .openapi(scheduleRoute, async (c) => {
      await verified(c)
      const cron = c.req.valid('param').schedule === 'minutely' ? MINUTELY : DAILY
      const report = await runSchedule(cron, new Date(), services.schedule(c.get('scope')))
      return c.json(report, 200)
    })
    .openapi({ ...listJobsRoute, middleware: admin }, async (c) => c.json(await listJobs(c.get('scope').db, c.req.valid('query')), 200))
    .openapi({ ...retryRoute, middleware: admin }, async (c) => {
      const id = c.req.valid('param').id
      if (!isUuid(id)) throw new AppError('not_found', 'No job with this id')
      const db = c.get('scope').db
      const [job] = await db
        .update(jobs)
        .set({
          status: 'pending',
          attempts: 0,
          generation: sql`${jobs.generation} + 1`,
          runAt: new Date(),
          dispatchedAt: null,
          updatedAt: new Date(),
        })
        .where(and(eq(jobs.id, id), eq(jobs.status, 'dead')))
        .returning()
      if (!job) {
        const [exists] = await db.select({ status: jobs.status }).from(jobs).where(eq(jobs.id, id)).limit(1)
        if (!exists) throw new AppError('not_found', 'No job with this id')
        throw new AppError('invalid_state', `Only dead jobs can be queued again; this one is ${exists.status}`)
      }
      services.dispatch(c.get('scope'), [
        {
          id: job.id,
          name: job.name,
          runAt: job.runAt,
          maxAttempts: job.maxAttempts,
          generation: job.generation,
          traceparent: job.traceparent,
        },
      ])
      return c.json(jobJson(job), 202)
    })
    .openapi({ ...emailsRoute, middleware: admin }, async (c) => {
      const q = c.req.valid('query')
      const after = cursorOf(q.cursor)
      const rows = await c
        .get('scope')
        .db.select()
        .from(emails)
        .where(after ? lt(emails.id, after) : undefined)
        .orderBy(desc(emails.id))
        .limit(q.limit + 1)
      const page = rows.slice(0, q.limit)
      return c.json(
        {
          items: page.map((e) => ({
            id: e.id,
            to: e.to,
            subject: e.subject,
            template: e.template,
            orderId: e.orderId,
            sentAt: e.sentAt.toISOString(),
          })),
          nextCursor: rows.length > q.limit ? encodeCursor(page.at(-1)!.id) : null,
        },
        200,
      )
    })
}
