import { sql } from 'drizzle-orm'
import { type Database, pgArray } from '../src/db/database.ts'
import { uuidv7 } from '../src/lib/uuid.ts'

/*
 * A demo catalog: products DEMO-0000001 … DEMO-N with plausible names,
 * prices, stock and categories. Deterministic per number, so seeding is
 * idempotent and resumable: it continues after the highest demo SKU present.
 */

const CATEGORIES = [
  'kitchen',
  'garden',
  'books',
  'toys',
  'outdoor',
  'office',
  'audio',
  'lighting',
  'bath',
  'pets',
  'games',
  'tools',
  'music',
  'sports',
  'baby',
  'beauty',
]
const ADJECTIVES = [
  'Classic',
  'Compact',
  'Deluxe',
  'Eco',
  'Everyday',
  'Handmade',
  'Heavy-duty',
  'Mini',
  'Modern',
  'Organic',
  'Portable',
  'Pro',
  'Rustic',
  'Smart',
  'Vintage',
  'Wireless',
]
const NOUNS = [
  'Bottle',
  'Lamp',
  'Chair',
  'Notebook',
  'Speaker',
  'Kettle',
  'Backpack',
  'Planter',
  'Puzzle',
  'Towel',
  'Blanket',
  'Clock',
  'Mug',
  'Brush',
  'Candle',
  'Basket',
]
const COLOURS = ['Red', 'Blue', 'Green', 'Black', 'White', 'Oak', 'Grey', 'Amber']

export const demoSku = (n: number) => `DEMO-${String(n).padStart(7, '0')}`

/** The highest demo number already in the database (0 when none). */
export async function highestDemo(db: Database): Promise<number> {
  const rows = (await db.execute(sql`select max(sku) as sku from products where sku like 'DEMO-%'`)) as unknown
  const list = Array.isArray(rows) ? rows : (rows as { rows: unknown[] }).rows
  const sku = (list[0] as { sku: string | null } | undefined)?.sku
  return sku ? Number(sku.slice(5)) : 0
}

/** Inserts demo products from..to (inclusive) in one statement; existing SKUs are left alone. */
export async function insertDemoBatch(db: Database, from: number, to: number, currency: string): Promise<void> {
  const cols = {
    id: [] as string[],
    sku: [] as string[],
    name: [] as string[],
    description: [] as string[],
    price: [] as number[],
    stock: [] as number[],
    category: [] as string[],
  }
  const now = Date.now()
  for (let n = from; n <= to; n++) {
    const a = ADJECTIVES[n % ADJECTIVES.length]!
    const b = NOUNS[Math.floor(n / ADJECTIVES.length) % NOUNS.length]!
    const c = COLOURS[Math.floor(n / 256) % COLOURS.length]!
    cols.id.push(uuidv7(now))
    cols.sku.push(demoSku(n))
    cols.name.push(`${a} ${b}, ${c} #${n}`)
    cols.description.push(`The ${a.toLowerCase()} ${b.toLowerCase()} in ${c.toLowerCase()}. Demo product ${n}.`)
    cols.price.push(199 + ((n * 7919) % 49_800))
    cols.stock.push(10 + ((n * 104_729) % 990))
    cols.category.push(CATEGORIES[(n * 31) % CATEGORIES.length]!)
  }
  await db.execute(sql`
    insert into products (id, sku, name, description, price_cents, currency, stock, category)
    select id, sku, name, description, price_cents, ${currency}, stock, category
    from unnest(
      ${pgArray(cols.id)}::uuid[], ${pgArray(cols.sku)}::text[], ${pgArray(cols.name)}::text[], ${pgArray(cols.description)}::text[],
      ${pgArray(cols.price)}::int[], ${pgArray(cols.stock)}::int[], ${pgArray(cols.category)}::text[]
    ) as t(id, sku, name, description, price_cents, stock, category)
    on conflict (sku) do nothing`)
}
