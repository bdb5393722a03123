import { Hono } from 'hono'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AppError } from '../../src/core/errors.ts'
import { type DatabaseHandle, runStatement, type Transaction } from '../../src/db/database.ts'
import { createPostgresDatabase } from '../../src/db/postgres.ts'
import type { AppEnv } from '../../src/http/context.ts'
import { jsonAnswer } from '../../src/http/edge.ts'
import { idempotency } from '../../src/http/idempotency.ts'
import { problemResponse } from '../../src/http/problem.ts'
import { uuidv7 } from '../../src/lib/uuid.ts'
import { migratedDatabase } from '../support/databases.ts'
import { startTcpProxy } from '../support/tcp-proxy.ts'
import { freshEmbeddedDatabase } from '../support/test-app.ts'

/*
 * The idempotency middleware on both databases it runs on. The stored answer
 * is sent behind the handler's effects and in the same write as the COMMIT,
 * without waiting for it: these tests hold that this still stores it in the
 * same transaction as the effects, and that an answer which appears between
 * the lookup and the store rolls the effects back and is replayed.
 */

type Handler = (tx: Transaction) => Promise<unknown>

function appOver(database: DatabaseHandle, userId: string, handler: () => Handler, opts: { declare?: boolean } = {}) {
  const app = new Hono<AppEnv>()
  app.onError((err, c) => (err instanceof AppError ? problemResponse(c, err) : c.text(String(err), 500)))
  app.use(async (c, next) => {
    c.set('scope', { db: database.db, database, read: (work) => work(database.db), waitUntil: () => {} })
    c.set('principal', { userId, role: 'customer' })
    c.set('requestId', 'idempotency-test')
    await next()
  })
  app.post('/v1/things', idempotency(), async (c) => {
    const body = (await c.req.json()) as { sku: string }
    await handler()(c.get('tx'))
    const answer = { made: body.sku, note: 'ünïcode "quoted" \u2028' }
    if (opts.declare) return jsonAnswer(c, 201, answer, { Location: `/v1/things/${body.sku}` })
    return c.json(answer, 201, { Location: `/v1/things/${body.sku}` })
  })
  return app
}

/** The handler's effect: a product row, in the request's transaction. */
const makeProduct = (sku: string) => (tx: Transaction) =>
  runStatement(
    tx,
    `insert into products (id, sku, name, description, price_cents, currency, stock, category)
     values ($1::uuid, $2::text, 'Thing', '', 100, 'USD', 1, 'things')`,
    [uuidv7(), sku],
  )

const post = (app: Hono<AppEnv>, key: string, sku: string) =>
  app.request('/v1/things', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({ sku }),
  })

/** Each database, and whether another connection can write while a request's transaction is open (PGlite has one connection). */
const databases: [string, () => Promise<DatabaseHandle>, boolean][] = [
  [
    'PostgreSQL',
    async () =>
      createPostgresDatabase({ url: await migratedDatabase('idempotency'), poolMax: 4, timeoutMs: 5000, statementTimeoutMs: 10_000 }),
    true,
  ],
  ['PGlite', freshEmbeddedDatabase, false],
]

describe.each(databases)('idempotency on %s', (_, open, concurrent) => {
  let database: DatabaseHandle
  let userId: string
  const rows = async <T>(text: string, params: unknown[] = []) => runStatement<T>(database.db, text, params)

  beforeAll(async () => {
    database = await open()
    userId = uuidv7()
    await rows(`insert into users (id, email, name, password_hash) values ($1::uuid, $2::text, 'Idem', 'x')`, [
      userId,
      `idem-${userId}@example.test`,
    ])
  }, 60_000)
  afterAll(() => database?.close())

  it('stores the answer in the transaction of the effects', async () => {
    const app = appOver(database, userId, () => makeProduct('IDEM-ONE'))
    const res = await post(app, 'one', 'IDEM-ONE')
    expect(res.status).toBe(201)
    // One transaction wrote both rows: they carry the same transaction id.
    const [effect] = await rows<{ xmin: string }>(`select xmin::text from products where sku = 'IDEM-ONE'`)
    const [answer] = await rows<{ xmin: string; status: number }>(
      `select xmin::text, status from idempotency_keys where user_id = $1::uuid and key = 'one'`,
      [userId],
    )
    expect(answer?.status).toBe(201)
    expect(answer?.xmin).toBe(effect?.xmin)

    const again = await post(app, 'one', 'IDEM-ONE')
    expect(again.status).toBe(201)
    expect(again.headers.get('idempotent-replayed')).toBe('true')
    expect(again.headers.get('location')).toBe('/v1/things/IDEM-ONE')
    expect(await again.json()).toEqual({ made: 'IDEM-ONE', note: 'ünïcode "quoted" \u2028' })
  })

  it('stores a declared answer byte for byte as it was sent', async () => {
    const app = appOver(database, userId, () => makeProduct('IDEM-DECL'), { declare: true })
    const res = await post(app, 'declared', 'IDEM-DECL')
    expect(res.status).toBe(201)
    const sent = await res.text()
    const again = await post(app, 'declared', 'IDEM-DECL')
    expect(again.headers.get('idempotent-replayed')).toBe('true')
    expect(again.headers.get('location')).toBe('/v1/things/IDEM-DECL')
    expect(again.headers.get('content-type')).toBe('application/json')
    expect(await again.text()).toBe(sent)
    const [stored] = await rows<{ body: string }>(`select body from idempotency_keys where user_id = $1::uuid and key = 'declared'`, [
      userId,
    ])
    expect(stored?.body).toBe(sent)
  })

  it.runIf(concurrent)('an answer stored after the lookup rolls the effects back, and that answer is replayed', async () => {
    // Another request with this key stores its answer while ours runs (as a refusal is stored, after its
    // rollback and outside the lock): our lookup missed it, and our own insert then fails.
    const app = appOver(database, userId, () => async (tx) => {
      await makeProduct('IDEM-LATE')(tx)
      await rows(
        `insert into idempotency_keys (user_id, key, fingerprint, status, body, headers, expires_at, created_at)
         values ($1::uuid, 'late', 'other', 409, '{"code":"insufficient_stock"}', '{"content-type":"application/problem+json"}', now() + interval '1 hour', now())`,
        [userId],
      )
    })
    const res = await post(app, 'late', 'IDEM-LATE')
    expect(res.status).toBe(422) // the stored answer was for another body: idempotency_key_reused
    expect(((await res.json()) as { code: string }).code).toBe('idempotency_key_reused')
    expect(res.headers.get('location')).toBeNull()
    expect(await rows(`select 1 from products where sku = 'IDEM-LATE'`)).toHaveLength(0)
    const stored = await rows<{ status: number }>(`select status from idempotency_keys where user_id = $1::uuid and key = 'late'`, [userId])
    expect(stored).toEqual([{ status: 409 }])
  })

  it('a key whose answer expired is used afresh', async () => {
    await rows(
      `insert into idempotency_keys (user_id, key, fingerprint, status, body, headers, expires_at, created_at)
       values ($1::uuid, 'old', 'other', 201, '{}', '{}', now() - interval '1 second', now() - interval '1 day')`,
      [userId],
    )
    const app = appOver(database, userId, () => makeProduct('IDEM-OLD'))
    const res = await post(app, 'old', 'IDEM-OLD')
    expect(res.status).toBe(201)
    expect(res.headers.get('idempotent-replayed')).toBeNull()
    expect(await rows(`select 1 from products where sku = 'IDEM-OLD'`)).toHaveLength(1)
    const [stored] = await rows<{ status: number; body: string; live: boolean }>(
      `select status, body, expires_at > now() as live from idempotency_keys where user_id = $1::uuid and key = 'old'`,
      [userId],
    )
    expect(stored).toEqual({ status: 201, body: JSON.stringify({ made: 'IDEM-OLD', note: 'ünïcode "quoted" \u2028' }), live: true })
  })

  it('a failed effect stores nothing and commits nothing', async () => {
    const app = appOver(database, userId, () => async (tx) => {
      await makeProduct('IDEM-FAIL')(tx)
      await makeProduct('IDEM-FAIL')(tx) // the SKU is unique: this fails
    })
    const res = await post(app, 'fail', 'IDEM-FAIL')
    expect(res.status).toBe(500)
    expect(await rows(`select 1 from products where sku = 'IDEM-FAIL'`)).toHaveLength(0)
    expect(await rows(`select 1 from idempotency_keys where user_id = $1::uuid and key = 'fail'`, [userId])).toHaveLength(0)
  })
})

describe('idempotency on PostgreSQL, in round trips', () => {
  it('costs three round trips from BEGIN to COMMIT, whatever the answer', async () => {
    const url = new URL(await migratedDatabase('idempotency_trips'))
    const proxy = await startTcpProxy(Number(url.port), url.hostname)
    url.host = `127.0.0.1:${proxy.port}`
    const database = createPostgresDatabase({ url: url.toString(), poolMax: 1, timeoutMs: 5000, statementTimeoutMs: 10_000 })
    const userId = uuidv7()
    await runStatement(database.db, `insert into users (id, email, name, password_hash) values ($1::uuid, $2::text, 'Trips', 'x')`, [
      userId,
      `trips-${userId}@example.test`,
    ])
    let sku = 0
    const app = appOver(database, userId, () => makeProduct(`IDEM-TRIP-${++sku}`), { declare: true })
    expect((await post(app, 'warm', 'IDEM-TRIP')).status).toBe(201) // the connection is open and its statements prepared
    const trips: Record<string, [number, number]> = {}
    for (const [name, key, body] of [
      ['stored', 'trip', 'IDEM-TRIP-A'],
      ['replayed', 'trip', 'IDEM-TRIP-A'],
      ['reused', 'trip', 'IDEM-TRIP-B'],
    ] as const) {
      const before = proxy.roundTrips
      const res = await post(app, key, body)
      trips[name] = [res.status, proxy.roundTrips - before]
    }
    // BEGIN; the lock and lookup with the handler's statement; the stored answer with the COMMIT (or the ROLLBACK).
    expect(trips).toEqual({ stored: [201, 3], replayed: [201, 3], reused: [422, 3] })
    await database.close()
    await proxy.close()
  })
})
