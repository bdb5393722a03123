import { sql } from 'drizzle-orm'
import { type DatabaseHandle, isDiskFull, rowsOf } from '../../db/database.ts'

/**
 * What `/readyz` says of the database: `ok`, `unavailable` (it does not
 * answer), or — it answers reads but refuses writes — `read_only` (a standby,
 * or `default_transaction_read_only`) or `disk_full` (its disk has no room
 * for a new block, so every INSERT that needs a new page fails).
 */
export type DatabaseReadiness = 'ok' | 'unavailable' | 'read_only' | 'disk_full'

/*
 * `select 1` answers on a full disk and on a read-only database while every
 * checkout fails, so readiness also asks whether a write would go through,
 * without writing anything that stays: the transaction's read-only state,
 * and a sort made to spill about 64 KB to a temporary file (work_mem at its
 * 64 kB minimum). The temporary file goes to the database's tablespace, where
 * its tables grow (unless `temp_tablespaces` names another), and a full disk
 * refuses it with the same SQLSTATE 53100 as a table's new page.
 */
const SPILL_ROWS = 4000

/**
 * Checks the database within `timeoutMs`: it must answer, be writable, and
 * have room on its disk. Never throws.
 *
 * @example
 * ```ts
 * const db = await checkDatabase(deps.database, 1500) // 'ok' | 'unavailable' | 'read_only' | 'disk_full'
 * ```
 */
export async function checkDatabase(database: DatabaseHandle, timeoutMs: number): Promise<DatabaseReadiness> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<'unavailable'>((resolve) => (timer = setTimeout(() => resolve('unavailable'), timeoutMs)))
  try {
    return await Promise.race([probe(database, timeoutMs), timeout])
  } finally {
    clearTimeout(timer)
  }
}

async function probe(database: DatabaseHandle, timeoutMs: number): Promise<DatabaseReadiness> {
  try {
    await database.ping(timeoutMs)
    return await database.db.transaction(async (tx) => {
      await tx.execute(sql`set local work_mem = '64kB'`)
      const [row] = rowsOf<{ readOnly: boolean }>(
        await tx.execute(
          sql`select (current_setting('transaction_read_only') = 'on' or pg_is_in_recovery()) as "readOnly",
                (select count(*) from (select g from generate_series(1, ${SPILL_ROWS}::int) g order by g desc offset 0) s) as "sorted"`,
        ),
      )
      return row?.readOnly ? 'read_only' : 'ok'
    })
  } catch (err) {
    return isDiskFull(err) ? 'disk_full' : 'unavailable'
  }
}
