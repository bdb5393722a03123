/**
 * What the three peers share: edgeshop's product answer — its bytes, its ETag,
 * its cache headers — so that each peer file holds only its framework's way
 * of serving it.
 */

/** edgeshop's L2 TTL. */
export const TTL_SECONDS = 300
export const CACHE_CONTROL = 'public, max-age=5, stale-while-revalidate=30'
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
export const NOT_FOUND = { code: 'not_found', message: 'No product with this id' }
const VERSION_FIELD = ',"version":'

/** The product as edgeshop shows it: same fields, same order, same formats. */
export const productJson = (row) =>
  JSON.stringify({
    id: row.id,
    sku: row.sku,
    name: row.name,
    description: row.description,
    priceCents: row.price_cents,
    currency: row.currency,
    stock: row.stock,
    category: row.category,
    active: row.active,
    version: row.version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  })

/**
 * `"<version>"` read from cached JSON (a string or a Buffer) without parsing
 * it: the field order is fixed, and `,"version":` cannot occur inside a JSON
 * string (a quote there is escaped).
 */
export function etagOf(json) {
  const start = json.indexOf(VERSION_FIELD) + VERSION_FIELD.length
  const end = json.indexOf(',', start)
  return `"${typeof json === 'string' ? json.slice(start, end) : json.toString('latin1', start, end)}"`
}
