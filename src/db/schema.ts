import { sql } from 'drizzle-orm'
import { bigint, boolean, check, index, integer, jsonb, pgTable, primaryKey, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'

/*
 * The database schema. drizzle-kit generates the SQL migrations in
 * `drizzle/` from this file (`./run db:generate`); the SQL must run on
 * PostgreSQL 15 and on PGlite, so it sticks to what both accept.
 *
 * Ids are UUID version 7, made by the application (src/lib/uuid.ts): time
 * ordered, so newest-first lists walk the primary key.
 */

const createdAt = () => timestamp('created_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow()
const updatedAt = () => timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow()

export const users = pgTable(
  'users',
  {
    id: uuid('id').primaryKey(),
    /** Stored trimmed and lower-cased: emails compare case-insensitively. */
    email: text('email').notNull(),
    name: text('name').notNull(),
    /** A PHC string: algorithm, parameters, salt and hash. */
    passwordHash: text('password_hash').notNull(),
    role: text('role', { enum: ['customer', 'admin'] })
      .notNull()
      .default('customer'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('users_email_key').on(t.email),
    check('users_role_check', sql`${t.role} in ('customer', 'admin')`),
    check('users_email_lower_check', sql`${t.email} = lower(${t.email})`),
  ],
)

/**
 * Refresh tokens, stored only as SHA-256 hashes. One family per login; every
 * refresh marks its token used and issues the next one in the same family.
 * Presenting a used token revokes the family.
 */
export const refreshTokens = pgTable(
  'refresh_tokens',
  {
    id: uuid('id').primaryKey(),
    familyId: uuid('family_id').notNull(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    tokenHash: text('token_hash').notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
    usedAt: timestamp('used_at', { withTimezone: true, mode: 'date' }),
    revokedAt: timestamp('revoked_at', { withTimezone: true, mode: 'date' }),
  },
  (t) => [
    uniqueIndex('refresh_tokens_token_hash_key').on(t.tokenHash),
    index('refresh_tokens_family_idx').on(t.familyId),
    index('refresh_tokens_user_idx').on(t.userId),
    index('refresh_tokens_expires_idx').on(t.expiresAt),
  ],
)

/**
 * The catalog. `version` is bumped by every change to a row — an admin's
 * edit, and stock taken or released by orders — so it is the ETag of the
 * product's representation and the guard of `If-Match`.
 *
 * Lists are newest first, which for UUIDv7 ids is `id desc`: the partial
 * indexes below serve every list query (all, by category) as an index walk
 * from the cursor; trigram indexes serve `q` (name or SKU, any case).
 */
export const products = pgTable(
  'products',
  {
    id: uuid('id').primaryKey(),
    sku: text('sku').notNull(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    priceCents: integer('price_cents').notNull(),
    currency: text('currency').notNull(),
    stock: integer('stock').notNull(),
    category: text('category').notNull(),
    active: boolean('active').notNull().default(true),
    version: integer('version').notNull().default(1),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    uniqueIndex('products_sku_key').on(t.sku),
    index('products_active_id_idx').on(t.id.desc().nullsFirst()).where(sql`${t.active}`),
    index('products_active_category_id_idx').on(t.category, t.id.desc().nullsFirst()).where(sql`${t.active}`),
    index('products_name_trgm_idx').using('gin', sql`${t.name} gin_trgm_ops`),
    index('products_sku_trgm_idx').using('gin', sql`${t.sku} gin_trgm_ops`),
    check('products_stock_check', sql`${t.stock} >= 0`),
    check('products_price_check', sql`${t.priceCents} >= 0`),
    check('products_version_check', sql`${t.version} >= 1`),
  ],
)

export const ORDER_STATUSES = [
  'pending_payment',
  'payment_processing',
  'paid',
  'fulfilled',
  'payment_failed',
  'cancelled',
  'expired',
] as const

/**
 * Orders. Every change of `status` is one conditional UPDATE (`… WHERE
 * status IN (…)`), so of two racing transitions one wins, and the stock an
 * order reserved is released by the one transition that leaves a holding
 * status.
 */
export const orders = pgTable(
  'orders',
  {
    id: uuid('id').primaryKey(),
    userId: uuid('user_id')
      .notNull()
      .references(() => users.id),
    status: text('status', { enum: ORDER_STATUSES }).notNull(),
    totalCents: integer('total_cents').notNull(),
    currency: text('currency').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [
    // A customer's orders, newest first, by creation time: an order the primary key cannot give. Ordered by id,
    // PostgreSQL walked the primary key backwards for a customer who owns most of the table, past every newer
    // order of everyone else (docs/BENCHMARKS.md, the orders scale case).
    index('orders_user_created_idx').on(t.userId, t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst()),
    index('orders_unpaid_expires_idx').on(t.expiresAt).where(sql`${t.status} in ('pending_payment', 'payment_failed')`),
    check(
      'orders_status_check',
      sql`${t.status} in ('pending_payment', 'payment_processing', 'paid', 'fulfilled', 'payment_failed', 'cancelled', 'expired')`,
    ),
    check('orders_total_check', sql`${t.totalCents} >= 0`),
  ],
)

/**
 * Every change of an order's status, in the order it committed per order:
 * the durable record the order event streams read (`id > Last-Event-ID`).
 * A row is written by the trigger `order_events_record` (drizzle/0006), in
 * the transaction of the UPDATE that changed the status, which also sends
 * `NOTIFY order_events` with the row's id and order id: delivered to
 * listeners only when that transaction commits, never for one rolled back.
 * `id` is monotonic: per order, transitions are serialised by the order
 * row's lock, so their ids rise in commit order.
 */
export const orderEvents = pgTable(
  'order_events',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    orderId: uuid('order_id')
      .notNull()
      .references(() => orders.id, { onDelete: 'cascade' }),
    userId: uuid('user_id').notNull(),
    status: text('status', { enum: ORDER_STATUSES }).notNull(),
    previousStatus: text('previous_status', { enum: ORDER_STATUSES }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [index('order_events_order_idx').on(t.orderId, t.id)],
)

/** The lines of an order, with the price and name the product had when it was ordered. */
export const orderItems = pgTable(
  'order_items',
  {
    orderId: uuid('order_id')
      .notNull()
      .references(() => orders.id, { onDelete: 'cascade' }),
    productId: uuid('product_id')
      .notNull()
      .references(() => products.id),
    sku: text('sku').notNull(),
    name: text('name').notNull(),
    unitPriceCents: integer('unit_price_cents').notNull(),
    quantity: integer('quantity').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.orderId, t.productId] }),
    check('order_items_quantity_check', sql`${t.quantity} between 1 and 100`),
    // A product's latest orders (GraphQL's Product.orders): its lines, newest order last, read from the end.
    index('order_items_by_product').on(t.productId, t.orderId),
  ],
)

/**
 * Stored answers of idempotent requests, per user and key, kept at least
 * 24 h. The row is written in the same transaction as the request's effect,
 * so an answer exists exactly when the effect does.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    userId: uuid('user_id').notNull(),
    key: text('key').notNull(),
    fingerprint: text('fingerprint').notNull(),
    status: integer('status').notNull(),
    body: text('body').notNull(),
    headers: jsonb('headers').$type<Record<string, string>>().notNull(),
    createdAt: createdAt(),
    expiresAt: timestamp('expires_at', { withTimezone: true, mode: 'date' }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.key] }), index('idempotency_keys_expires_idx').on(t.expiresAt)],
)

export const JOB_STATUSES = ['pending', 'running', 'succeeded', 'dead'] as const

/**
 * The outbox: a job is inserted in the transaction that causes it, then
 * delivered at least once (QStash, or the embedded runner). `dispatched_at`
 * records the hand-over to QStash; `traceparent` carries the trace across.
 */
export const jobs = pgTable(
  'jobs',
  {
    id: uuid('id').primaryKey(),
    name: text('name').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    status: text('status', { enum: JOB_STATUSES }).notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    maxAttempts: integer('max_attempts').notNull(),
    /** Bumped when an admin queues a dead job again: part of its QStash deduplication id, so the new run is not dropped as a duplicate. */
    generation: integer('generation').notNull().default(0),
    lastError: text('last_error'),
    runAt: timestamp('run_at', { withTimezone: true, mode: 'date' }).notNull(),
    dispatchedAt: timestamp('dispatched_at', { withTimezone: true, mode: 'date' }),
    /** The W3C trace context of the transaction that wrote the job (null when it was not traced): each run is a span under it. */
    traceparent: text('traceparent'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('jobs_due_idx').on(t.runAt).where(sql`${t.status} = 'pending'`),
    index('jobs_status_id_idx').on(t.status, t.id.desc().nullsFirst()),
    check('jobs_status_check', sql`${t.status} in ('pending', 'running', 'succeeded', 'dead')`),
  ],
)

/** Every email the mailer sent; one per idempotency key (the job that sent it). */
export const emails = pgTable(
  'emails',
  {
    id: uuid('id').primaryKey(),
    idempotencyKey: text('idempotency_key').notNull(),
    to: text('to').notNull(),
    subject: text('subject').notNull(),
    template: text('template').notNull(),
    orderId: uuid('order_id'),
    providerId: text('provider_id'),
    sentAt: timestamp('sent_at', { withTimezone: true, mode: 'date' }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('emails_idempotency_key').on(t.idempotencyKey), index('emails_order_idx').on(t.orderId)],
)

/**
 * The ledger of the simulated payment provider: what a real provider keeps
 * on its side. One capture per idempotency key.
 */
export const simulatedCharges = pgTable('simulated_charges', {
  idempotencyKey: text('idempotency_key').primaryKey(),
  reference: text('reference').notNull(),
  token: text('token').notNull(),
  amountCents: integer('amount_cents').notNull(),
  currency: text('currency').notNull(),
  status: text('status', { enum: ['captured', 'declined'] }).notNull(),
  createdAt: createdAt(),
})

/** One row per schedule slot that ran: a tick of a schedule runs once, however many instances tick. */
export const scheduleRuns = pgTable(
  'schedule_runs',
  {
    schedule: text('schedule').notNull(),
    slot: timestamp('slot', { withTimezone: true, mode: 'date' }).notNull(),
    startedAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.schedule, t.slot] })],
)
