import type { Context, MiddlewareHandler, Next } from 'hono'
import { AppError } from '../core/errors.ts'
import { type Database, isUniqueViolation, runStatement, type Transaction } from '../db/database.ts'
import { sha256Hex } from '../lib/bytes.ts'
import { canonicalJson } from '../lib/canonical-json.ts'
import type { AppEnv } from './context.ts'
import type { PlainAnswer } from './edge.ts'
import { text } from './text.ts'

/** How long a stored answer is kept (the API promises at least 24 h; the daily purge removes older ones). */
export const IDEMPOTENCY_TTL_MS = 25 * 3600 * 1000

/**
 * The `Idempotency-Key` header as routes declare it, and as {@link idempotency}
 * checks it: a missing or empty key is 400 `idempotency_key_missing`, any
 * other that breaks this rule 400 `validation_failed`.
 */
export const IDEMPOTENCY_KEY = text({
  min: 1,
  max: 255,
  pattern: /^[\x21-\x7e]*$/,
  message: 'must be 1 to 255 visible ASCII characters',
}).openapi({
  description:
    'Required: 1 to 255 visible ASCII characters, one key per intended operation. Missing or empty: 400 `idempotency_key_missing`; otherwise invalid: 400 `validation_failed`.',
  example: '5f0e2a7c-1b3d-4e6f-8a9b-0c1d2e3f4a5b',
})
const KEPT = new Set(['content-type', 'location', 'etag'])
/** Answers that are outcomes of the request and are replayed; validation, auth and server errors are not. */
const STORED_ERRORS = new Set([404, 409, 412, 422])

/** The transaction-scoped lock on (user, key) and, once held, a live stored answer: one statement, prepared once per connection. */
const LOOKUP = `
  select l.locked, k.fingerprint, k.status, k.body, k.headers::text as headers
  from (select pg_try_advisory_xact_lock(hashtextextended($1::text, 7172616102)) as locked) l
  left join idempotency_keys k on l.locked and k.user_id = $2::uuid and k.key = $3::text and k.expires_at > now()`

/** A live stored answer, read afresh (after a rollback; no lock needed to read it). */
const STORED = `
  select true as locked, fingerprint, status, body, headers::text as headers from idempotency_keys
  where user_id = $1::uuid and key = $2::text and expires_at > now()`

/** The stored answer's columns and their parameters ({@link answerRow}), shared by {@link STORE_LAST} and {@link STORE}. */
const INSERT_ANSWER = 'insert into idempotency_keys (user_id, key, fingerprint, status, body, headers, expires_at, created_at)'
const ANSWER_VALUES = '$1::uuid, $2::text, $3::text, $4::int, $5::text, $6::jsonb, $7::timestamptz, now()'

/**
 * Inside the request's transaction, its last statement: an expired answer
 * for the key makes way and the answer is stored, in one statement. It fails
 * with a unique violation (23505) when a live answer for the key is there
 * already, which aborts the transaction. The insert reads the delete's count,
 * so the delete has run before it, and a row this transaction deleted is no
 * conflict.
 */
const STORE_LAST = `
  with expired as (delete from idempotency_keys where user_id = $1::uuid and key = $2::text and expires_at <= now() returning 1)
  ${INSERT_ANSWER}
  select ${ANSWER_VALUES} from (select count(*) from expired) as made_way`

/** Stores an answer outside a transaction (a refusal, after its rollback); a live one already there is left alone. */
const STORE = `
  ${INSERT_ANSWER}
  values (${ANSWER_VALUES})
  on conflict (user_id, key) do update
  set fingerprint = excluded.fingerprint, status = excluded.status, body = excluded.body, headers = excluded.headers,
      expires_at = excluded.expires_at, created_at = now()
  where idempotency_keys.expires_at <= now()`

/**
 * Makes a POST idempotent per user and `Idempotency-Key` (API.md § Orders).
 *
 * The request runs in one transaction that this middleware opens and hands
 * to the handler as `c.get('tx')`:
 * 1. a transaction-scoped advisory lock on (user, key): a concurrent request
 *    with the same key does not wait, it answers 409
 *    `idempotency_request_in_progress`;
 * 2. a stored answer for the key: the same request (method, path and body,
 *    compared as canonical JSON) gets it again with `Idempotent-Replayed:
 *    true`; a different one gets 422 `idempotency_key_reused`;
 * 3. otherwise the handler's answer is stored in the same transaction as
 *    its effects: either both are committed or neither is.
 * Steps 1 and 2 are pipelined with the handler (one round trip for all
 * three), so the handler may run and be rolled back: handlers behind this
 * middleware have effects only through `tx` and `afterCommit`. Step 3 is
 * pipelined with the COMMIT: after BEGIN, a request costs two round trips.
 * Business refusals (404, 409, 412, 422) are stored too, after the rollback
 * of their effects; 5xx answers are not, so a retry runs again.
 *
 * @example
 * ```ts
 * createRoute({ ..., middleware: [authenticate(services), idempotency()] })
 * ```
 */
export function idempotency(): MiddlewareHandler<AppEnv> {
  return async function idempotency(c, next) {
    const key = checkedKey(c.req.header('idempotency-key'))
    const userId = c.get('principal').userId
    const request: Keyed = { userId, key, fingerprint: sha256Hex(`${c.req.method} ${c.req.path}\n${canonicalJson(await c.req.text())}`) }
    const db = c.get('scope').db
    const afterCommit: (() => void)[] = []
    c.set('afterCommit', (work) => afterCommit.push(work))

    let outcome = await runOnce(c, next, db, request)
    // Another request's answer appeared after this one looked: read afresh (no lock needed to read it), it is given instead.
    if (outcome.kind === 'answered-meanwhile') {
      const [found] = await runStatement<LookupRow>(db, STORED, [userId, key])
      outcome = found ? answerOf(found, request.fingerprint) : { kind: 'busy' }
    }
    switch (outcome.kind) {
      case 'committed':
        for (const work of afterCommit) work()
        return
      case 'refused':
        // Business refusals are given again too, stored after the rollback of their effects; 5xx are not, so a retry runs again.
        if (STORED_ERRORS.has(c.res.status)) await store(db, request, await readBack(c.res)).catch(() => {})
        return
    }
    // The speculative answer is dropped whole: none of its headers (a Location) may leak into the one given instead.
    c.res = undefined
    c.error = undefined
    if (outcome.kind === 'busy')
      throw new AppError('idempotency_request_in_progress', 'A request with this Idempotency-Key is still running')
    if (outcome.kind === 'reused') throw new AppError('idempotency_key_reused', 'This Idempotency-Key was used with a different request')
    const { body, status, headers } = outcome.answer
    c.res = new Response(body, { status, headers: { ...headers, 'Idempotent-Replayed': 'true' } })
  }
}

/** The `Idempotency-Key` header, checked ({@link IDEMPOTENCY_KEY}). */
function checkedKey(key: string | undefined): string {
  if (key === undefined || key === '') throw new AppError('idempotency_key_missing', 'Send an Idempotency-Key header (1 to 255 characters)')
  const checked = IDEMPOTENCY_KEY.safeParse(key)
  if (!checked.success) {
    throw new AppError('validation_failed', 'The Idempotency-Key is not valid', {
      errors: checked.error.issues.map((issue) => ({ path: 'headers.idempotency-key', message: issue.message })),
    })
  }
  return key
}

/** Whose key it is, the key, and the request it was sent with. */
interface Keyed {
  userId: string
  key: string
  fingerprint: string
}

/** What one run of the request came to. */
type Outcome =
  /** Its effects and its answer are committed together. */
  | { kind: 'committed' }
  /** The handler refused or failed (`c.error`, a 4xx or 5xx answer): its effects are rolled back. */
  | { kind: 'refused' }
  /** Another request with the key holds its lock. */
  | { kind: 'busy' }
  /** The key's stored answer is for a different request. */
  | { kind: 'reused' }
  /** The key's stored answer, for this request: it is given again. */
  | { kind: 'replay'; answer: StoredAnswer }
  /** Another request stored the key's answer after this one looked: nothing of this one was committed; look again. */
  | { kind: 'answered-meanwhile' }

/** What the transaction's callback decided: to roll back, and why, or to commit with the answer's store in flight. */
type Decision = { commit: false; outcome: Outcome } | { commit: true; stored: Promise<unknown> }

/**
 * Runs the request once, in its transaction, and says what came of it. The
 * lock and the lookup (one statement) and the handler's first statement
 * leave in one round trip: the handler runs speculatively, and when the key
 * turns out busy or answered its effects roll back with the transaction.
 * Hence the rule for handlers behind this middleware: effects only through
 * `tx` and `afterCommit`. The lookup's snapshot may predate the lock, so an
 * answer committed in between can be missed; the insert of this request's
 * answer finds it then (`answered-meanwhile`).
 */
async function runOnce(c: Context<AppEnv>, next: Next, db: Database, request: Keyed): Promise<Outcome> {
  const ended = await transaction(db, async (tx): Promise<Decision> => {
    const lookup = runStatement<LookupRow>(tx, LOOKUP, [`${request.userId}:${request.key}`, request.userId, request.key])
    lookup.catch(() => {}) // awaited below, after the handler; this only keeps a failure from counting as unhandled meanwhile
    c.set('tx', tx)
    await next()
    // A statement of the handler that failed (a timeout, a value out of range) aborts the transaction, and a
    // lookup that had not run by then fails with it (25P02): the handler's own error is the answer then.
    const found = await lookup.then(
      ([row]) => row,
      (err: unknown) => {
        if (c.error) return 'aborted' as const
        throw err
      },
    )
    if (found === 'aborted') return { commit: false, outcome: { kind: 'refused' } }
    if (!found?.locked) return { commit: false, outcome: { kind: 'busy' } }
    if (found.fingerprint !== null) return { commit: false, outcome: answerOf(found, request.fingerprint) }
    if (c.error || c.res.status >= 400) return { commit: false, outcome: { kind: 'refused' } }
    // The answer is stored by the transaction's last statement, which is not awaited here: the COMMIT that
    // the driver sends once this callback returns leaves in the same write, and no round trip waits for the
    // store alone. When the insert fails, the transaction is aborted and PostgreSQL answers that COMMIT
    // with a rollback; the insert's own promise says so below.
    const answer = c.get('answer')
    const stored = storeLast(tx, request, answer !== undefined ? keptOf(answer) : await readBack(c.res))
    stored.catch(() => {}) // awaited below, once the transaction has ended
    return { commit: true, stored }
  })
  if (ended.decision?.commit !== true) {
    if (ended.failed) throw ended.error
    return ended.decision.outcome
  }
  // With the store in flight, its own outcome says what happened (PGlite reports the rolled-back COMMIT as an error too).
  const storeFailure = await ended.decision.stored.then(
    () => undefined,
    (err: unknown) => err,
  )
  if (storeFailure === undefined) {
    if (ended.failed) throw ended.error
    return { kind: 'committed' }
  }
  // A live answer already stored means another request with this key committed between our lookup's snapshot
  // and our lock (or stored its refusal after its rollback): nothing was committed; that one is replayed.
  if (isUniqueViolation(storeFailure, 'idempotency_keys_user_id_key_pk')) return { kind: 'answered-meanwhile' }
  throw storeFailure
}

const ROLLBACK = Symbol('rollback')

/**
 * A transaction that commits or rolls back as its callback decides, and
 * ends in that decision, or in the error that ended it (with the decision,
 * when one was made). Drizzle rolls a transaction back only when its
 * callback throws: that one throw stays in here.
 */
async function transaction<D extends { commit: boolean }>(
  db: Database,
  decide: (tx: Transaction) => Promise<D>,
): Promise<{ failed: false; decision: D } | { failed: true; error: unknown; decision: D | undefined }> {
  let decision: D | undefined
  try {
    await db.transaction(async (tx) => {
      decision = await decide(tx as Transaction)
      if (!decision.commit) throw ROLLBACK
    })
  } catch (error) {
    if (error !== ROLLBACK) return { failed: true, error, decision }
  }
  return { failed: false, decision: decision! }
}

interface StoredAnswer {
  status: number
  body: string
  headers: Record<string, string>
}

interface LookupRow {
  locked: boolean
  fingerprint: string | null
  status: number | null
  body: string | null
  headers: string | null
}

/** The stored answer to replay when this is the same request again, else `reused`. */
function answerOf(row: LookupRow, fingerprint: string): Extract<Outcome, { kind: 'replay' | 'reused' }> {
  if (row.fingerprint !== fingerprint) return { kind: 'reused' }
  const headers = JSON.parse(row.headers ?? '{}') as Record<string, string>
  return { kind: 'replay', answer: { status: Number(row.status), body: row.body ?? '', headers } }
}

/** What is stored of an answer the handler made as plain data (`jsonAnswer`): its status, body and the headers a replay repeats. */
function keptOf(answer: PlainAnswer): StoredAnswer {
  const headers: Record<string, string> = {}
  for (const name in answer.headers) {
    const lower = name.toLowerCase()
    if (KEPT.has(lower)) headers[lower] = answer.headers[name]!
  }
  return { status: answer.status, body: answer.body ?? '', headers }
}

/** What is stored of any other answer, read from a copy of the response: its status, body and the headers a replay repeats. */
async function readBack(res: Response): Promise<StoredAnswer> {
  const headers: Record<string, string> = {}
  for (const name of KEPT) {
    const value = res.headers.get(name)
    if (value !== null) headers[name] = value
  }
  return { status: res.status, body: await res.clone().text(), headers }
}

/** The parameters of {@link STORE_LAST} and {@link STORE}. */
const answerRow = ({ userId, key, fingerprint }: Keyed, answer: StoredAnswer) => [
  userId,
  key,
  fingerprint,
  answer.status,
  answer.body,
  JSON.stringify(answer.headers),
  new Date(Date.now() + IDEMPOTENCY_TTL_MS).toISOString(),
]

/** Stores an answer outside a transaction; a live answer for the key already there is kept. */
async function store(db: Database, request: Keyed, answer: StoredAnswer): Promise<void> {
  await runStatement(db, STORE, answerRow(request, answer))
}

/**
 * Sends the transaction's last statement ({@link STORE_LAST}) without
 * waiting for it. The promise rejects with a unique violation when a live
 * answer is there already.
 */
function storeLast(tx: Transaction, request: Keyed, answer: StoredAnswer): Promise<unknown> {
  return runStatement(tx, STORE_LAST, answerRow(request, answer))
}
