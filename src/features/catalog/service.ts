import { and, desc, eq, ilike, inArray, lt, or, sql } from 'drizzle-orm'
import { AppError } from '../../core/errors.ts'
import { decodeCursor, encodeCursor, type Page } from '../../core/page.ts'
import type { Reads } from '../../core/scope.ts'
import { type Database, isUniqueViolation } from '../../db/database.ts'
import { products } from '../../db/schema.ts'
import { type Cache, type Cached, later } from '../../infra/cache.ts'
import { fnv1a } from '../../lib/http-cache.ts'
import { isUuid, uuidv7 } from '../../lib/uuid.ts'
import type { CreateProductInput, ListQueryInput, UpdateProductInput } from './schemas.ts'

/*
 * The catalog. Reads go through the two-tier cache and answer the bytes it
 * holds; writes bump `version` in the same UPDATE that changes the row, then
 * evict this instance's copies at once and replace the shared ones.
 */

export interface CatalogService {
  /** The primary: writes, and reads that decide a write. */
  db: Database
  /** Reads that may be served by a replica: what the cache loads. */
  read: Reads
  cache: Cache
  /** The store's currency: every product is priced in it. */
  currency: string
  /** Finishes cache invalidation in Redis off the response path. */
  waitUntil: (work: Promise<unknown>) => void
}

type ProductRow = typeof products.$inferSelect

export const PRODUCTS = 'products'
/** Lower-cased: `/v1/products/{id}` takes any case, and every spelling must hit (and be invalidated as) one entry. */
export const productKey = (id: string) => `product:${id.toLowerCase()}`

/** The product as the API shows it. */
export function productJson(row: ProductRow) {
  return {
    id: row.id,
    sku: row.sku,
    name: row.name,
    description: row.description,
    priceCents: row.priceCents,
    currency: row.currency,
    stock: row.stock,
    category: row.category,
    active: row.active,
    version: row.version,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  }
}
export type ProductJson = ReturnType<typeof productJson>

/** The cache entry of a product: its JSON, serialised once. */
export const cachedProduct = (row: ProductRow): Cached => ({
  body: JSON.stringify(productJson(row)),
  etag: `"${row.version}"`,
  version: row.version,
})

const likePattern = (q: string) => `%${q.replace(/[\\%_]/g, (ch) => `\\${ch}`)}%`

/**
 * The cached answer for one product, or null when it is unknown or archived.
 * `writtenAt`: the caller wrote at that time (ms) and must see it when the product is loaded.
 */
export function productAnswer(
  deps: Pick<CatalogService, 'read' | 'cache' | 'waitUntil'>,
  id: string,
  writtenAt?: number,
): Promise<Cached | null> {
  if (!isUuid(id)) return Promise.resolve(null)
  return deps.cache.entity(
    productKey(id),
    (after) =>
      deps.read(
        async (db) => {
          const [row] = await db
            .select()
            .from(products)
            .where(and(eq(products.id, id), eq(products.active, true)))
            .limit(1)
          return row ? cachedProduct(row) : null
        },
        later(after, writtenAt),
      ),
    deps.waitUntil,
  )
}

/**
 * One page of active products, newest first. Keyset pagination on the id
 * (UUIDv7: creation order), so every page costs one index walk of `limit`
 * rows whatever its depth, and products added between pages never shift the
 * pages after the first.
 */
export function listPage(
  deps: Pick<CatalogService, 'read' | 'cache' | 'waitUntil'>,
  query: ListQueryInput,
  writtenAt?: number,
): Promise<Cached> {
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor)
  if (query.cursor !== undefined && after === undefined) {
    throw new AppError('validation_failed', 'The cursor is not valid', {
      errors: [{ path: 'query.cursor', message: 'is not a cursor from this API' }],
    })
  }
  const key = JSON.stringify([query.category ?? null, query.q ?? null, query.limit, after ?? null])
  return deps.cache.page(
    PRODUCTS,
    key,
    async (since) => {
      const rows = await deps.read(
        (db) =>
          db
            .select()
            .from(products)
            .where(
              and(
                eq(products.active, true),
                query.category === undefined ? undefined : eq(products.category, query.category),
                query.q === undefined
                  ? undefined
                  : or(ilike(products.name, likePattern(query.q)), ilike(products.sku, likePattern(query.q))),
                after === undefined ? undefined : lt(products.id, after),
              ),
            )
            .orderBy(desc(products.id))
            .limit(query.limit + 1),
        later(since, writtenAt),
      )
      const more = rows.length > query.limit
      const items = more ? rows.slice(0, query.limit) : rows
      const body = JSON.stringify({ items: items.map(productJson), nextCursor: more ? encodeCursor(items.at(-1)!.id) : null })
      return { body, etag: `W/"${fnv1a(body)}"`, version: 0 }
    },
    deps.waitUntil,
  )
}

/** A page of active products as objects: {@link listPage}'s cached answer, read back. */
export async function productsPage(
  deps: Pick<CatalogService, 'read' | 'cache' | 'waitUntil'>,
  query: ListQueryInput,
  writtenAt?: number,
): Promise<Page<ProductJson>> {
  return JSON.parse((await listPage(deps, query, writtenAt)).body) as Page<ProductJson>
}

/**
 * The active products among `ids`, in one statement whatever their number
 * (a batch loader's read: the products of a page of order lines). Ids that
 * are not UUIDs, unknown or archived are absent from the map.
 */
export async function productsByIds(
  deps: Pick<CatalogService, 'read'>,
  ids: readonly string[],
  writtenAt?: number,
): Promise<Map<string, ProductJson>> {
  const wanted = [...new Set(ids.filter(isUuid).map((id) => id.toLowerCase()))]
  if (wanted.length === 0) return new Map()
  const rows = await deps.read(
    (db) =>
      db
        .select()
        .from(products)
        .where(and(inArray(products.id, wanted), eq(products.active, true))),
    writtenAt,
  )
  return new Map(rows.map((row) => [row.id, productJson(row)]))
}

/** After a product changed: its copies here are gone now; Redis follows off the response path. */
export function productChanged(deps: Pick<CatalogService, 'cache' | 'waitUntil'>, id: string, version: number): void {
  deps.waitUntil(Promise.all([deps.cache.invalidateEntity(productKey(id), version), deps.cache.invalidateCollection(PRODUCTS)]))
}

export async function createProduct(deps: CatalogService, input: CreateProductInput, now = new Date()): Promise<ProductRow> {
  const [row] = await deps.db
    .insert(products)
    .values({ id: uuidv7(now.getTime()), ...input, currency: deps.currency, version: 1, createdAt: now, updatedAt: now })
    .onConflictDoNothing({ target: products.sku })
    .returning()
  if (!row) throw new AppError('sku_taken', `A product with SKU ${input.sku} exists`)
  productChanged(deps, row.id, row.version)
  return row
}

/**
 * Changes a product in one conditional UPDATE that also bumps its version.
 * With `ifMatch`, the UPDATE only applies to those versions: 412 otherwise.
 */
export async function updateProduct(
  deps: CatalogService,
  id: string,
  patch: UpdateProductInput,
  ifMatch: 'any' | number[] | undefined,
  now = new Date(),
): Promise<ProductRow> {
  if (!isUuid(id)) throw new AppError('not_found', 'No product with this id')
  const versions = Array.isArray(ifMatch) ? ifMatch : undefined
  if (versions?.length === 0) throw new AppError('version_mismatch', 'If-Match names no version of this product')
  let row: ProductRow | undefined
  try {
    ;[row] = await deps.db
      .update(products)
      .set({ ...patch, version: sql`${products.version} + 1`, updatedAt: now })
      .where(and(eq(products.id, id), versions === undefined ? undefined : or(...versions.map((v) => eq(products.version, v)))))
      .returning()
  } catch (err) {
    if (isUniqueViolation(err)) throw new AppError('sku_taken', `A product with SKU ${patch.sku} exists`)
    throw err
  }
  if (!row) {
    const [exists] = await deps.db.select({ version: products.version }).from(products).where(eq(products.id, id)).limit(1)
    if (!exists) throw new AppError('not_found', 'No product with this id')
    throw new AppError('version_mismatch', `The product is at version ${exists.version}`, { headers: { ETag: `"${exists.version}"` } })
  }
  productChanged(deps, row.id, row.version)
  return row
}

/** Archives a product: no longer listed or orderable; orders keep it. Archiving twice is fine. */
export async function archiveProduct(deps: CatalogService, id: string, now = new Date()): Promise<void> {
  if (!isUuid(id)) throw new AppError('not_found', 'No product with this id')
  const [row] = await deps.db
    .update(products)
    .set({ active: false, version: sql`${products.version} + 1`, updatedAt: now })
    .where(and(eq(products.id, id), eq(products.active, true)))
    .returning({ version: products.version })
  if (row) {
    productChanged(deps, id, row.version)
    return
  }
  const [exists] = await deps.db.select({ id: products.id }).from(products).where(eq(products.id, id)).limit(1)
  if (!exists) throw new AppError('not_found', 'No product with this id')
}
