import { sql } from 'drizzle-orm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DatabaseHandle } from '../../src/db/database.ts'
import { products } from '../../src/db/schema.ts'
import { statementBudget } from '../../src/db/statement-budget.ts'
import { freshEmbeddedDatabase } from '../support/test-app.ts'

/*
 * The statement budget that bounds a GraphQL request's reads: every statement
 * a budgeted database prepares counts, and the one past the bound is refused
 * without reaching the database.
 */

let database: DatabaseHandle
beforeAll(async () => {
  database = await freshEmbeddedDatabase()
})
afterAll(() => database?.close())

class OverBudget extends Error {}

describe('statementBudget', () => {
  it('counts selects and raw statements, and refuses the one past the bound', async () => {
    const budget = statementBudget(3, (max) => new OverBudget(`over ${max}`))
    const db = budget.budgeted(database.db)
    await db.select().from(products).limit(1)
    await db.execute(sql`select 1`)
    expect(budget.spent).toBe(2)
    await db.select({ id: products.id }).from(products).limit(1)
    expect(budget.spent).toBe(3)
    await expect(db.select().from(products).limit(1)).rejects.toThrow(OverBudget)
    // A raw statement is refused as it is begun: in an async function, that is its promise rejecting.
    await expect((async () => db.execute(sql`select 1`))()).rejects.toThrow('over 3')
    expect(budget.spent).toBe(3)
  })

  it('is one budget for every database it wraps, and leaves the wrapped database uncounted', async () => {
    const budget = statementBudget(10, () => new OverBudget())
    expect(budget.budgeted(database.db)).toBe(budget.budgeted(database.db))
    await budget.budgeted(database.db).execute(sql`select 1`)
    await database.db.execute(sql`select 1`)
    expect(budget.spent).toBe(1)
    const other = statementBudget(10, () => new OverBudget())
    await other.budgeted(database.db).execute(sql`select 1`)
    expect([budget.spent, other.spent]).toEqual([1, 1])
  })
})
