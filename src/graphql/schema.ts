import { createSchema } from 'graphql-yoga'
import { z } from 'zod'
import { AppError } from '../core/errors.ts'
import type { Principal } from '../core/principal.ts'
import { ListQuery, type ProductJson, productAnswer, productsPage } from '../features/catalog/index.ts'
import { type JobStatus, listJobs } from '../features/jobs/index.ts'
import { listOrders, MAX_ORDER_LINES, type OrderJson } from '../features/orders/index.ts'
import { MAX_PAGE, PageQuery } from '../http/page.ts'
import { fieldErrors } from '../http/validation.ts'
import type { GraphQLContext } from './context.ts'
import type { ListBound } from './row-bound.ts'

/** How many orders `Product.orders` may ask for: it is asked per product of a page, so less than a page. */
export const PRODUCT_ORDERS_MAX = 20

/** Every list field with the most objects it answers, for the bound on a query's objects (row-bound.ts). */
export const LIST_BOUNDS: Record<string, ListBound> = {
  'Query.products': { max: MAX_PAGE, limitArg: 'limit' },
  'Query.jobs': { max: MAX_PAGE, limitArg: 'limit' },
  'Viewer.orders': { max: MAX_PAGE, limitArg: 'limit' },
  'Product.orders': { max: PRODUCT_ORDERS_MAX, limitArg: 'limit' },
  'Order.items': { max: MAX_ORDER_LINES },
}

/** The schema's SDL: what `GET /graphql/schema.graphql` serves, and the schema itself. */
export const TYPE_DEFS = /* GraphQL */ `
"""
edgeshop's read API. Mutations stay in REST (/v1/...). Money is integer minor
units with an ISO 4217 currency; timestamps are ISO 8601 UTC strings; ids are
UUIDs. Pages take limit (1 to 100, default 20) and the nextCursor of the page
before, like the REST lists. Errors carry the REST problem code in
extensions.code (unauthorized, forbidden, validation_failed, query_too_complex,
service_unavailable, internal_error).
"""
type Query {
  "Active products, newest first (GET /v1/products). q matches name or SKU, case-insensitively."
  products(limit: Int = 20, cursor: String, category: String, q: String): ProductPage!
  "One active product; null when unknown or archived (GET /v1/products/{id})."
  product(id: ID!): Product
  "The signed-in caller. Without a bearer token: null, with the error code unauthorized."
  viewer: Viewer
  "Background jobs, newest first (admin; GET /v1/admin/jobs)."
  jobs(status: JobStatus, limit: Int = 20, cursor: String): JobPage!
}

type Viewer {
  id: ID!
  role: Role!
  "The caller's own orders, newest first (an admin's too: only their own)."
  orders(limit: Int = 20, cursor: String): OrderPage!
}

enum Role {
  customer
  admin
}

type Product {
  id: ID!
  sku: String!
  name: String!
  description: String!
  priceCents: Int!
  currency: String!
  stock: Int!
  category: String!
  active: Boolean!
  version: Int!
  createdAt: String!
  updatedAt: String!
  "The latest orders holding this product, newest first (admin). limit: 1 to ${PRODUCT_ORDERS_MAX}."
  orders(limit: Int = 5): [Order!]!
}

type ProductPage {
  items: [Product!]!
  nextCursor: String
}

enum OrderStatus {
  pending_payment
  payment_processing
  paid
  payment_failed
  fulfilled
  cancelled
  expired
}

type Order {
  id: ID!
  status: OrderStatus!
  items: [OrderItem!]!
  totalCents: Int!
  currency: String!
  createdAt: String!
  updatedAt: String!
  expiresAt: String!
}

type OrderItem {
  productId: ID!
  "As it was when ordered."
  sku: String!
  "As it was when ordered."
  name: String!
  unitPriceCents: Int!
  quantity: Int!
  lineTotalCents: Int!
  "The product as it is now; null once archived."
  product: Product
}

type OrderPage {
  items: [Order!]!
  nextCursor: String
}

enum JobStatus {
  pending
  running
  succeeded
  dead
}

type Job {
  id: ID!
  name: String!
  status: JobStatus!
  attempts: Int!
  lastError: String
  "The trace the job belongs to, when it was sampled."
  traceId: String
  runAt: String!
  createdAt: String!
  updatedAt: String!
}

type JobPage {
  items: [Job!]!
  nextCursor: String
}
`

/** Arguments parsed by the REST schema of the same list, so both refuse the same values the same way. */
function parsed<T extends z.ZodType>(schema: T, args: Record<string, unknown>): z.output<T> {
  // GraphQL hands absent optional arguments over as null.
  const present = Object.fromEntries(Object.entries(args).filter(([, v]) => v !== null && v !== undefined))
  const result = schema.safeParse(present)
  if (!result.success) throw new AppError('validation_failed', 'Some arguments are invalid', { errors: fieldErrors(result.error, 'args') })
  return result.data
}

const ProductOrdersArgs = z.object({ limit: z.number().int().min(1).max(PRODUCT_ORDERS_MAX) })

function signedIn(ctx: GraphQLContext): Principal {
  if (!ctx.principal) throw new AppError('unauthorized', 'An access token is required: Authorization: Bearer <token>')
  return ctx.principal
}

function admin(ctx: GraphQLContext): Principal {
  const principal = signedIn(ctx)
  if (principal.role !== 'admin') throw new AppError('forbidden', 'This needs the admin role')
  return principal
}

type Args = Record<string, unknown>

/**
 * The executable schema: resolvers read through the feature services and the
 * request's loaders on the context, never from tables of their own. Built once
 * per process (per isolate on Workers), on the first GraphQL request: an
 * isolate that serves none does not pay for it when it starts.
 */
export const graphqlSchema = () => (schema ??= buildSchema())
let schema: ReturnType<typeof buildSchema> | undefined

const buildSchema = () =>
  createSchema<GraphQLContext>({
    typeDefs: TYPE_DEFS,
    resolvers: {
      Query: {
        products: (_: unknown, args: Args, ctx: GraphQLContext) => productsPage(ctx.catalog, parsed(ListQuery, args), ctx.writtenAt),
        product: async (_: unknown, args: { id: string }, ctx: GraphQLContext) => {
          const cached = await productAnswer(ctx.catalog, args.id, ctx.writtenAt)
          return cached ? (JSON.parse(cached.body) as ProductJson) : null
        },
        viewer: (_: unknown, _args: Args, ctx: GraphQLContext) => {
          const principal = signedIn(ctx)
          return { id: principal.userId, role: principal.role }
        },
        jobs: (_: unknown, args: Args, ctx: GraphQLContext) => {
          admin(ctx)
          const query = parsed(PageQuery, args) as { limit: number; cursor?: string }
          // The primary, as the REST list reads it: job states change by the second.
          return listJobs(ctx.scope.db, { ...query, status: args.status as JobStatus | undefined })
        },
      },
      Viewer: {
        orders: (viewer: { id: string }, args: Args, ctx: GraphQLContext) =>
          // Own orders whatever the role: an admin's REST list is everybody's, the viewer's is theirs.
          ctx.scope.read((db) => listOrders(db, { userId: viewer.id, role: 'customer' }, parsed(PageQuery, args)), ctx.writtenAt),
      },
      Product: {
        orders: (product: ProductJson, args: Args, ctx: GraphQLContext) => {
          admin(ctx)
          return ctx.loaders.ordersOfProduct(parsed(ProductOrdersArgs, args).limit).load(product.id)
        },
      },
      OrderItem: {
        product: (item: OrderJson['items'][number], _args: Args, ctx: GraphQLContext) => ctx.loaders.product.load(item.productId),
      },
    },
  })
