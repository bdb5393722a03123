import { and, asc, desc, eq, gt, inArray } from 'drizzle-orm'
import { AppError } from '../../core/errors.ts'
import type { Principal } from '../../core/principal.ts'
import type { Database } from '../../db/database.ts'
import { orderEvents, orders } from '../../db/schema.ts'
import { isUuid } from '../../lib/uuid.ts'

/*
 * Order events: every change of an order's status, as the trigger of
 * drizzle/0006 records it in `order_events` in the transaction that made the
 * change. Streams send them from the record, after the last id a client has;
 * a bus (src/infra/order-events-bus.ts) only says when to read again.
 */

type EventRow = typeof orderEvents.$inferSelect

/** Rows read per query; a stream further behind reads again at once. */
export const EVENT_BATCH = 100

/** One event as a stream sends it (`data:`); its id is the SSE `id:`. */
export function eventJson(row: EventRow) {
  return { orderId: row.orderId, status: row.status, previousStatus: row.previousStatus, at: row.createdAt.toISOString() }
}

/** Events with these ids (of every order), oldest first. */
export function eventsWithIds(db: Database, ids: number[]): Promise<EventRow[]> {
  return db.select().from(orderEvents).where(inArray(orderEvents.id, ids)).orderBy(asc(orderEvents.id))
}

/**
 * How long a stream of every order looks for an event whose id it skipped: ids are taken when a status
 * changes and become visible when its transaction commits, so a later id may be seen first. A transaction
 * idle longer than STATEMENT_TIMEOUT_MS is ended by the server; an id still missing after this was rolled back.
 */
export const GAP_MS = 30_000
/** At most this many skipped ids are looked for at once; beyond it the oldest are given up. */
const MAX_GAPS = 1000

/** Events after `after` (an event id), oldest first: of one order, or (undefined) of every order. */
export function eventsAfter(db: Database, orderId: string | undefined, after: number): Promise<EventRow[]> {
  return db
    .select()
    .from(orderEvents)
    .where(orderId === undefined ? gt(orderEvents.id, after) : and(eq(orderEvents.orderId, orderId), gt(orderEvents.id, after)))
    .orderBy(asc(orderEvents.id))
    .limit(EVENT_BATCH)
}

/** The id of the newest event recorded (0 before the first): where a stream of every order starts without `Last-Event-ID`. */
export async function latestEventId(db: Database): Promise<number> {
  const [row] = await db.select({ id: orderEvents.id }).from(orderEvents).orderBy(desc(orderEvents.id)).limit(1)
  return row?.id ?? 0
}

/** Checks that the principal may follow this order (its owner, or an admin); otherwise 404, which does not reveal that it exists. */
export async function ensureVisibleOrder(db: Database, id: string, principal: Principal): Promise<void> {
  if (!isUuid(id)) throw new AppError('not_found', 'No order with this id')
  const [order] = await db.select({ userId: orders.userId }).from(orders).where(eq(orders.id, id)).limit(1)
  if (!order || (order.userId !== principal.userId && principal.role !== 'admin')) throw new AppError('not_found', 'No order with this id')
}

/** What one stream needs to run: where to write, what to read, and when to stop. */
export interface EventPump {
  /** Writes raw SSE text; resolves once the client's side took it. */
  write(text: string): Promise<unknown>
  /** Events after an id, oldest first, at most {@link EVENT_BATCH}. */
  read(after: number): Promise<EventRow[]>
  /**
   * Events with these ids: given for a stream of every order, whose ids may become visible out of order
   * (per order they cannot: one order's changes take its row lock in turn). An id the stream skipped is
   * looked for on every read for {@link GAP_MS}, and sent when its transaction has committed.
   */
  readIds?: ((ids: number[]) => Promise<EventRow[]>) | undefined
  /** The last id the client has. */
  after: number
  heartbeatMs: number
  /** True once the client left or the process is shutting down. */
  ended(): boolean
}

/**
 * Runs one stream until `ended()`: sends what was recorded after the client's
 * last id, then waits for a wake-up (the returned `wake`, which the bus and
 * the end of the stream call) and reads again; after `heartbeatMs` without
 * anything written, a comment line keeps the connection open (and finds out
 * whether the client is still there).
 *
 * @example
 * ```ts
 * const pump = eventPump({ write, read, after: 0, heartbeatMs: 15000, ended })
 * const stop = await bus.subscribe(orderId, pump.wake)
 * await pump.run()
 * ```
 */
export function eventPump(opts: EventPump): { wake: () => void; run: () => Promise<void> } {
  let due = true
  let woken: (() => void) | undefined
  const wake = () => {
    due = true
    woken?.()
  }
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        woken = undefined
        resolve()
      }, ms)
      woken = () => {
        clearTimeout(timer)
        woken = undefined
        resolve()
      }
    })
  const run = async () => {
    let after = opts.after
    // Skipped ids (every-order streams), with when they were first missed.
    const gaps = new Map<number, number>()
    // The heartbeat counts from the last write, not the last wake-up: a poll wakes a stream far more often.
    let wrote = Date.now()
    const send = async (text: string) => {
      await opts.write(text)
      wrote = Date.now()
    }
    const sendEvent = (row: EventRow) => send(`id: ${row.id}\nevent: status\ndata: ${JSON.stringify(eventJson(row))}\n\n`)
    while (!opts.ended()) {
      if (due) {
        due = false
        const rows = await opts.read(after)
        const now = Date.now()
        for (const row of rows) {
          if (opts.readIds) for (let id = Math.max(after + 1, row.id - MAX_GAPS); id < row.id; id++) gaps.set(id, now)
          await sendEvent(row)
          after = row.id
        }
        if (opts.readIds && gaps.size > 0) {
          for (const [id, since] of gaps) if (now - since > GAP_MS || gaps.size > MAX_GAPS) gaps.delete(id)
          for (const row of await opts.readIds([...gaps.keys()])) {
            gaps.delete(row.id)
            await sendEvent(row)
          }
        }
        if (rows.length === EVENT_BATCH) due = true
        continue
      }
      const quiet = Date.now() - wrote
      if (quiet >= opts.heartbeatMs) await send(': heartbeat\n\n')
      else await sleep(opts.heartbeatMs - quiet)
    }
  }
  return { wake, run }
}
