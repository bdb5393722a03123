import type { Database } from './database.ts'

/**
 * A bound on the statements one unit of work (a GraphQL request) may send:
 * `spent` counts them, and the statement past `max` is not sent — its query
 * rejects with what `exceeded()` makes instead (a raw `execute` throws it as
 * it is begun, which inside an async function is the same rejection).
 */
export interface StatementBudget {
  readonly max: number
  readonly spent: number
}

interface Session {
  prepareQuery(...args: unknown[]): unknown
}

/**
 * A budget, and a way to put databases under it: `budgeted(db)` is `db` with
 * every statement it prepares counted against the budget (a select, insert,
 * update, delete or `execute`, each once per run). Transactions opened on it
 * are not counted: the reads this serves run outside them.
 *
 * @example
 * ```ts
 * const budget = statementBudget(10, () => new AppError('query_too_complex', 'Over 10 statements'))
 * const rows = await budget.budgeted(db).select().from(products)
 * budget.spent // 1
 * ```
 */
export function statementBudget(max: number, exceeded: (max: number) => Error): StatementBudget & { budgeted(db: Database): Database } {
  let spent = 0
  const wrapped = new WeakMap<Database, Database>()
  const budget = {
    max,
    get spent() {
      return spent
    },
    budgeted(db: Database): Database {
      const known = wrapped.get(db)
      if (known) return known
      const session = (db as unknown as { session: Session }).session
      const counted: Session = Object.create(session)
      counted.prepareQuery = (...args: unknown[]) => {
        if (spent >= max) throw exceeded(max)
        spent++
        return session.prepareQuery.apply(counted, args)
      }
      // Drizzle's builders take `this.session` when a query is begun: a database whose session is the counted one.
      const view: Database = Object.create(db as object, { session: { value: counted } })
      wrapped.set(db, view)
      return view
    },
  }
  return budget
}
