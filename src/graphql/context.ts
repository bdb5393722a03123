import DataLoader from 'dataloader'
import { AppError } from '../core/errors.ts'
import type { Principal } from '../core/principal.ts'
import type { RequestScope } from '../core/scope.ts'
import { statementBudget } from '../db/statement-budget.ts'
import { type CatalogService, type ProductJson, productsByIds } from '../features/catalog/index.ts'
import { type OrderJson, ordersOfProducts } from '../features/orders/index.ts'

/** What a GraphQL request's resolvers work with; made per request by {@link graphqlContext}. */
export interface GraphQLContext {
  /** The request's id, for log lines. */
  requestId: string
  /** The caller, when a bearer token came with the request. */
  principal: Principal | undefined
  /** The request's scope, its reads under the request's statement budget. */
  scope: RequestScope
  /** The catalog over that scope. */
  catalog: CatalogService
  /** The caller's last write (read-your-writes), for reads that may go to a replica. */
  writtenAt: number | undefined
  /** Batch loaders, one set per request: a field asked for N times costs one statement. */
  loaders: {
    product: DataLoader<string, ProductJson | null>
    ordersOfProduct(limit: number): DataLoader<string, OrderJson[]>
  }
  /** What the answer turned out to be: data and no error (it may then be cached when it is anyone's). */
  readonly outcome: { complete: boolean }
}

/**
 * The context of one GraphQL request: its scope with every statement counted
 * against `maxStatements` (the one bound on what a query may cost the
 * database, whichever field reads), the catalog over it, and fresh loaders.
 */
export function graphqlContext(opts: {
  requestId: string
  scope: RequestScope
  principal: Principal | undefined
  writtenAt: number | undefined
  maxStatements: number
  catalog(scope: RequestScope): CatalogService
}): GraphQLContext {
  const { writtenAt } = opts
  const budget = statementBudget(
    opts.maxStatements,
    (max) => new AppError('query_too_complex', `The query needs more than ${max} database statements; ask for less in one request`),
  )
  const base = opts.scope
  const scope: RequestScope = {
    get db() {
      return budget.budgeted(base.db)
    },
    get database() {
      return base.database
    },
    read: (work, after) => base.read((db) => work(budget.budgeted(db)), after),
    waitUntil: (work) => base.waitUntil(work),
  }
  const catalog = opts.catalog(scope)
  const byLimit = new Map<number, DataLoader<string, OrderJson[]>>()
  return {
    requestId: opts.requestId,
    principal: opts.principal,
    scope,
    catalog,
    writtenAt,
    outcome: { complete: false },
    loaders: {
      product: new DataLoader(async (ids) => {
        const found = await productsByIds(catalog, ids, writtenAt)
        return ids.map((id) => found.get(id.toLowerCase()) ?? null)
      }),
      ordersOfProduct(limit) {
        let loader = byLimit.get(limit)
        if (!loader) {
          loader = new DataLoader(async (ids) => {
            const found = await scope.read((db) => ordersOfProducts(db, ids, limit), writtenAt)
            return ids.map((id) => found.get(id.toLowerCase()) ?? [])
          })
          byLimit.set(limit, loader)
        }
        return loader
      },
    },
  }
}
