import { sql } from 'drizzle-orm'
import { boolean, check, index, integer, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core'

/*
 * The database schema. drizzle-kit generates the SQL migrations in
 * `drizzle/` from this file (`bun run db:generate`); the SQL must run on
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
    index('products_active_id_idx').on(t.id.desc()).where(sql`${t.active}`),
    index('products_active_category_id_idx').on(t.category, t.id.desc()).where(sql`${t.active}`),
    index('products_name_trgm_idx').using('gin', sql`${t.name} gin_trgm_ops`),
    index('products_sku_trgm_idx').using('gin', sql`${t.sku} gin_trgm_ops`),
    check('products_stock_check', sql`${t.stock} >= 0`),
    check('products_price_check', sql`${t.priceCents} >= 0`),
    check('products_version_check', sql`${t.version} >= 1`),
  ],
)
