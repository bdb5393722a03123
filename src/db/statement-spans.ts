import { type Context, context, type Span, SpanKind, trace } from '@opentelemetry/api'
import type postgres from 'postgres'
import { failed, traced, tracer } from '../observability/tracing.ts'

/*
 * Spans for database statements, made where postgres.js takes them
 * (src/db/postgres.ts): one CLIENT span per statement, named by its
 * operation and first table (`select products`, `insert jobs`, `with` for
 * checkout's CTE), never by its text or parameters; one `transaction` span
 * around each transaction traced work begins. Installed only when the
 * process traces (`createPostgresDatabase({ traced: true })`): with tracing
 * off the pool is as it was; with it on, a statement outside traced work
 * costs one context lookup.
 */

const KEYWORD = /^\s*([a-z]+)/i
const TABLE = /\b(?:from|into|update|join)\s+"?([a-z_][a-z0-9_]*)"?/i

/**
 * The operation and first table a statement names, from the start of its text.
 *
 * @example
 * ```ts
 * statementName('insert into "jobs" ("id") values ($1)') // { operation: 'insert', table: 'jobs' }
 * ```
 */
export function statementName(text: string): { operation: string; table: string | undefined } {
  const head = text.slice(0, 400)
  const operation = KEYWORD.exec(head)?.[1]?.toLowerCase() ?? 'query'
  // A CTE's tables are the CTE's business; its first is not the statement's.
  const table = operation === 'with' ? undefined : TABLE.exec(head)?.[1]
  return { operation, table }
}

/** The active context when a span in it is recording: the only case in which statements get spans. */
function tracedContext(): Context | undefined {
  return traced() ? context.active() : undefined
}

interface Settling {
  resolve: (x: unknown) => void
  reject: (x: unknown) => void
  strings?: readonly string[]
}

/** A database error as a span records it: its SQLSTATE, never its message (which may quote a value). */
function fail(span: Span, err: unknown) {
  const code = (err as { code?: unknown } | null)?.code
  failed(span, new Error(typeof code === 'string' ? `SQLSTATE ${code}` : err instanceof Error ? err.name : 'error'))
}

/** Ends `span` when the query settles. */
function endWith(query: Settling, span: Span) {
  const { resolve, reject } = query
  query.resolve = (x) => {
    span.end()
    resolve(x)
  }
  query.reject = (x) => {
    fail(span, x)
    span.end()
    reject(x)
  }
}

/** A postgres.js query, with a span from now until it settles when traced work asked for it. */
export function spanStatement<T extends object>(query: T): T {
  const parent = tracedContext()
  if (parent === undefined) return query
  const settling = query as unknown as Settling
  const { operation, table } = statementName(settling.strings?.[0] ?? '')
  const attributes: Record<string, string> = { 'db.system.name': 'postgresql', 'db.operation.name': operation }
  if (table) attributes['db.collection.name'] = table
  endWith(settling, tracer().startSpan(table ? `${operation} ${table}` : operation, { kind: SpanKind.CLIENT, attributes }, parent))
  return query
}

/** A transaction's (or savepoint's) client whose statements get spans. */
function tracedClient(tx: postgres.TransactionSql): postgres.TransactionSql {
  return new Proxy(tx, {
    get(target, prop, receiver) {
      if (prop === 'unsafe') return (...args: Parameters<postgres.TransactionSql['unsafe']>) => spanStatement(target.unsafe(...args))
      if (prop === 'savepoint')
        return (...args: unknown[]) => {
          const fn = args[args.length - 1] as (sp: postgres.TransactionSql) => unknown
          return (target.savepoint as (...a: unknown[]) => Promise<unknown>)(...args.slice(0, -1), (sp: postgres.TransactionSql) =>
            fn(tracedClient(sp)),
          )
        }
      return Reflect.get(target, prop, receiver)
    },
    apply(target, thisArg, args) {
      return spanStatement(Reflect.apply(target, thisArg, args) as object)
    },
  })
}

/**
 * Runs `begin(fn)` with every statement of the transaction a span while
 * traced work runs it (a job's run starts its span after the transaction
 * began), and in a `transaction` span when traced work began it.
 */
export function spanTransaction<R>(
  begin: (fn: (tx: postgres.TransactionSql) => unknown) => Promise<R>,
  fn: (tx: postgres.TransactionSql) => unknown,
): Promise<R> {
  const parent = tracedContext()
  if (parent === undefined) return begin((tx) => fn(tracedClient(tx)))
  const span = tracer().startSpan('transaction', { kind: SpanKind.CLIENT, attributes: { 'db.system.name': 'postgresql' } }, parent)
  const inSpan = trace.setSpan(parent, span)
  return begin((tx) => context.with(inSpan, () => fn(tracedClient(tx)))).then(
    (result) => {
      span.end()
      return result
    },
    (err) => {
      fail(span, err)
      span.end()
      throw err
    },
  )
}
