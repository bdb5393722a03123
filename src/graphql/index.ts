import { costLimitPlugin } from '@escape.tech/graphql-armor-cost-limit'
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases'
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth'
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens'
import { GraphQLError, NoSchemaIntrospectionCustomRule, type ValidationContext } from 'graphql'
import { createYoga, type Plugin, useErrorHandler } from 'graphql-yoga'
import { Hono } from 'hono'
import { AppError } from '../core/errors.ts'
import type { CatalogService } from '../features/catalog/index.ts'
import { bearerPrincipal } from '../http/auth.ts'
import type { AppEnv, HttpServices, RequestScope } from '../http/context.ts'
import { toAppError } from '../http/errors.ts'
import { PUBLIC_CACHE_CONTROL } from '../lib/http-cache.ts'
import { traceIdOf } from '../observability/tracing.ts'
import { type GraphQLContext, graphqlContext } from './context.ts'
import { objectBoundRule } from './row-bound.ts'
import { graphqlSchema, LIST_BOUNDS, TYPE_DEFS } from './schema.ts'

/*
 * The GraphQL read API (docs/API.md § GraphQL): graphql-yoga on a Hono
 * route, the schema built once, loaders and the statement budget per request.
 */

/**
 * The bounds on one query. A query over one of them is answered 400
 * `query_too_complex`: before anything runs, or for statements (counted as
 * the query runs) at the one past the bound, which is not sent.
 */
export const GRAPHQL_LIMITS = {
  /** Nesting: the deepest useful queries (products → items → orders → items → product → a field; viewer → orders → …) are 6. */
  depth: 7,
  /** Aliases: a handful to ask for two pages side by side; not hundreds of copies of a costly field. */
  aliases: 10,
  /** Tokens of the document: a generous hand-written query is a few hundred. */
  tokens: 1000,
  /**
   * graphql-armor's static cost (objects 2, scalars 1, times 1.5 per level; page sizes do not count, they are
   * bounded by `limit`): every field of products, their orders, items and products is 200; five such copies are the most.
   */
  cost: 1000,
  /** Statements sent to the database per request, whatever the fields: a batched query needs 4 or fewer. */
  statements: 12,
  /**
   * Objects a query could answer, every page full and every order at its 50 lines (row-bound.ts): the viewer's
   * 20 latest orders with their products are about 2,000; 20 products with their 5 latest orders' lines and
   * products, 10,140. A page of 100 products with theirs would be 50,000: ask for smaller pages.
   */
  objects: 20_000,
} as const

/** What the GraphQL routes use: the HTTP layer's services and the catalog over a scope. */
export interface GraphQLServices extends HttpServices {
  catalog(scope: RequestScope): CatalogService
}

/** By name, not `instanceof`: the executor may load graphql's CommonJS build where this module has its ESM one. */
const isGraphQLError = (e: unknown): e is GraphQLError => e instanceof Error && e.name === 'GraphQLError'

/** What a resolver threw, under the GraphQLErrors that locate it (the executor may wrap it more than once). */
function thrown(error: unknown): unknown {
  let e = error
  while (isGraphQLError(e) && e.originalError) e = e.originalError
  return e
}

/**
 * The errors of a request that was refused as a whole (no data, no error of a
 * field): a body that is not JSON is `invalid_json`, a query over a limit
 * `query_too_complex`, anything else (no query, a parse or schema error, a
 * mutation) `validation_failed`. Such an answer, and one with a query stopped
 * at its statement budget, is a 400 whatever media type the client accepts
 * (yoga keeps 200 for `application/json` clients).
 */
function refusals(limitErrors: WeakSet<GraphQLError>): Plugin {
  const codeOf = (error: unknown) => (isGraphQLError(error) ? error.extensions?.code : undefined)
  const refusal = (error: GraphQLError) => {
    const code = limitErrors.has(error)
      ? 'query_too_complex'
      : codeOf(error) === 'BAD_REQUEST' && /JSON/.test(error.message)
        ? 'invalid_json'
        : 'validation_failed'
    // Only the message, where it is and the code: yoga's extensions may carry a parser's error object.
    return new GraphQLError(error.message, { source: error.source, positions: error.positions, extensions: { code } })
  }
  return {
    onResultProcess: ({ result, setResult, serverContext }) => {
      if (Array.isArray(result) || Symbol.asyncIterator in result) return
      const errors = result.errors ?? []
      if (errors.length === 0) {
        // yoga hands the hooks a copy of the context it was given: the outcome is an object both share.
        const outcome = (serverContext as Partial<GraphQLContext>).outcome
        if (outcome) outcome.complete = true
        return
      }
      const refused = result.data == null && errors.every((e) => !isGraphQLError(e) || e.path === undefined)
      if (!refused && !errors.some((e) => codeOf(e) === 'query_too_complex')) return
      setResult({
        ...result,
        ...(refused ? { errors: errors.map((e) => (isGraphQLError(e) ? refusal(e) : e)) } : {}),
        extensions: { ...result.extensions, http: { status: 400 } },
      })
    },
  }
}

/**
 * `POST /graphql` and `GET /graphql?query=…` (the GraphQL read API), and
 * `GET /graphql/schema.graphql` (its SDL). A bearer token is checked as on
 * REST (a bad one is 401); without one the caller is anonymous.
 */
export function graphqlRoutes(services: GraphQLServices) {
  const { config, logger, tokens } = services
  // A token is optional (products are anyone's); one that is sent must verify, as on REST.
  const optionalPrincipal = (header: string | undefined) => (header === undefined ? undefined : bearerPrincipal(tokens, header))
  const limitErrors = new WeakSet<GraphQLError>()
  // Reported as validation errors (not thrown, which would skip the answer's 400), and remembered as the limits' own.
  const rejected = [
    (context: ValidationContext | null, error: GraphQLError) => {
      limitErrors.add(error)
      context?.reportError(error)
    },
  ]
  const refuse = { onReject: rejected, propagateOnRejection: false }
  const plugins: Plugin[] = [
    maxTokensPlugin({ n: GRAPHQL_LIMITS.tokens, onReject: rejected }),
    maxDepthPlugin({ n: GRAPHQL_LIMITS.depth, ...refuse, flattenFragments: true }),
    maxAliasesPlugin({ n: GRAPHQL_LIMITS.aliases, ...refuse }),
    costLimitPlugin({ maxCost: GRAPHQL_LIMITS.cost, ...refuse, flattenFragments: true }),
    { onValidate: ({ addValidationRule }) => addValidationRule(objectBoundRule(LIST_BOUNDS, GRAPHQL_LIMITS.objects, rejected[0]!)) },
    refusals(limitErrors),
  ]
  if (config.production) plugins.push({ onValidate: ({ addValidationRule }) => addValidationRule(NoSchemaIntrospectionCustomRule) })

  // Unexpected errors are logged with the request's id here; maskError (which has no context) only renders them.
  plugins.push(
    useErrorHandler(({ errors, context, phase }) => {
      if (phase !== 'execution') return
      for (const error of errors) {
        const original = thrown(error)
        if (!isGraphQLError(original) && toAppError(original).code === 'internal_error')
          logger.error('unhandled error', {
            requestId: (context as Partial<GraphQLContext>).requestId,
            traceId: traceIdOf(),
            error: original instanceof Error ? original.message : String(original),
            stack: original instanceof Error ? original.stack : undefined,
          })
      }
    }),
  )

  // Made on the first GraphQL request, with the schema (see graphqlSchema).
  let yoga: ReturnType<typeof createYoga<GraphQLContext>> | undefined
  const server = () =>
    (yoga ??= createYoga<GraphQLContext>({
      schema: graphqlSchema(),
      graphqlEndpoint: '/graphql',
      plugins,
      cors: false,
      graphiql: false,
      landingPage: false,
      logging: false,
      maskedErrors: {
        maskError(error: unknown, message: string): Error {
          const original = thrown(error)
          if (isGraphQLError(original)) return original
          const appError = toAppError(original)
          return new GraphQLError(appError.code === 'internal_error' ? message : (appError.detail ?? appError.message), {
            ...(isGraphQLError(error) ? { nodes: error.nodes, path: error.path } : {}),
            extensions: { code: appError.code, ...(appError.errors ? { errors: appError.errors } : {}) },
          })
        },
      },
    }))

  return new Hono<AppEnv>()
    .on(['GET', 'POST'], '/graphql', async (c) => {
      const context = graphqlContext({
        requestId: c.get('requestId'),
        scope: c.get('scope'),
        principal: await optionalPrincipal(c.req.header('authorization')),
        writtenAt: c.get('writtenAt'),
        maxStatements: GRAPHQL_LIMITS.statements,
        catalog: services.catalog,
      })
      const res = await server().fetch(c.req.raw, context)
      if (res.status === 415)
        throw new AppError('unsupported_media_type', 'Send the query as application/json, or in the query string of a GET')
      // A GET without a token that every field answered is the same for every anonymous caller: HTTP caches may
      // keep it as briefly as the catalog's REST reads. Anything else is the caller's own.
      const shared = c.req.method === 'GET' && context.principal === undefined && context.outcome.complete
      res.headers.set('Cache-Control', shared ? PUBLIC_CACHE_CONTROL : 'no-store')
      if (c.req.method === 'GET') res.headers.set('Vary', 'Authorization')
      return res
    })
    .get('/graphql/schema.graphql', (c) =>
      c.body(TYPE_DEFS.trimStart(), 200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'public, max-age=300' }),
    )
}
