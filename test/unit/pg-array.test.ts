import { sql } from 'drizzle-orm'
import { describe, expect, it } from 'vitest'
import { pgArray, rowsOf } from '../../src/db/database.ts'
import { freshEmbeddedDatabase } from '../support/test-app.ts'

describe('pgArray', () => {
  it('reads back in PostgreSQL exactly as sent, whatever the characters', async () => {
    const db = await freshEmbeddedDatabase()
    const texts = ['a', 'b,c', 'quote "q"', 'back\\slash', '{x}', 'NULL', ' spaced ', 'ünïcode ✓', "it's", '']
    const rows = rowsOf<{ v: string }>(await db.db.execute(sql`select unnest(${pgArray(texts)}::text[]) as v`))
    expect(rows.map((r) => r.v)).toEqual(texts)
    const ints = rowsOf<{ v: number }>(await db.db.execute(sql`select unnest(${pgArray([1, -2, 300])}::int[]) as v`))
    expect(ints.map((r) => r.v)).toEqual([1, -2, 300])
    await db.close()
  })
})
