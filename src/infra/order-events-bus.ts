import type { DatabaseHandle } from '../db/database.ts'
import type { Logger } from '../observability/logger.ts'

/*
 * How a stream learns that an order event may have been recorded. The bus
 * carries no events, only wake-ups: the durable record (`order_events`) is
 * what a stream reads and sends, from the last id it sent, so a wake-up
 * missed or doubled costs a query, never an event.
 */

/** The channel the `order_events_record` trigger notifies (drizzle/0006_order_events.sql). */
export const ORDER_EVENTS_CHANNEL = 'order_events'

/** Called when events for the subscribed order (or any order) may be waiting. */
export type Wake = () => void

/**
 * Wake-ups for order event streams.
 *
 * @example
 * ```ts
 * const stop = await bus.subscribe(orderId, () => reread())
 * // ... later
 * stop()
 * ```
 */
export interface OrderEventsBus {
  /** `notify`: PostgreSQL or PGlite LISTEN; `poll`: a timer per stream (Workers). */
  readonly kind: 'notify' | 'poll'
  /**
   * Calls `wake` whenever an event of `orderId` (undefined: of any order) may have been recorded. Resolves once
   * wake-ups flow, so that a stream reading the record after this misses nothing committed later.
   */
  subscribe(orderId: string | undefined, wake: Wake): Promise<() => void>
  /** Stops listening. */
  close(): Promise<void>
}

/**
 * The bus of a process with a database connection that outlives requests
 * (Bun and Node with PostgreSQL, or the embedded PGlite), over its handle's
 * `listen`: one LISTEN per process, opened on the first subscription, fans
 * each NOTIFY out to the streams of its order and the streams of every order. NOTIFY is sent by the
 * transaction that changed the status, so it arrives only once that
 * transaction committed, on every instance sharing the database. When the
 * listen restarts (a reconnect), every stream is woken: notifications sent
 * while it was down are lost, but the record is not.
 */
export function createNotifyBus(listenOn: NonNullable<DatabaseHandle['listen']>, logger: Logger): OrderEventsBus {
  const byOrder = new Map<string, Set<Wake>>()
  const everyOrder = new Set<Wake>()
  let listening: Promise<() => Promise<void>> | undefined
  let closed = false

  const wakeAll = () => {
    for (const wake of everyOrder) wake()
    for (const wakes of byOrder.values()) for (const wake of wakes) wake()
  }
  const onMessage = (payload: string) => {
    let orderId: unknown
    try {
      orderId = (JSON.parse(payload) as { orderId?: unknown }).orderId
    } catch {
      orderId = undefined
    }
    if (typeof orderId !== 'string') return wakeAll()
    for (const wake of everyOrder) wake()
    for (const wake of byOrder.get(orderId) ?? []) wake()
  }
  const listen = () => {
    listening ??= listenOn(ORDER_EVENTS_CHANNEL, onMessage, wakeAll).catch((err) => {
      listening = undefined
      logger.warn('order events: LISTEN failed; the next stream tries again', { error: err instanceof Error ? err.message : String(err) })
      throw err
    })
    return listening
  }

  return {
    kind: 'notify',
    async subscribe(orderId, wake) {
      if (closed) throw new Error('the order events bus is closed')
      await listen()
      const set = orderId === undefined ? everyOrder : (byOrder.get(orderId) ?? new Set<Wake>())
      if (orderId !== undefined) byOrder.set(orderId, set)
      set.add(wake)
      return () => {
        set.delete(wake)
        if (orderId !== undefined && set.size === 0 && byOrder.get(orderId) === set) byOrder.delete(orderId)
      }
    },
    async close() {
      closed = true
      const stop = listening
      listening = undefined
      if (stop) await (await stop.catch(() => async () => {}))().catch(() => {})
    },
  }
}

/**
 * The bus of Workers: a request cannot hold a LISTEN connection beyond
 * itself, nor hear another request's, so each stream re-reads the record
 * every `pollMs` from inside its own request.
 */
export function createPollBus(pollMs: number): OrderEventsBus {
  return {
    kind: 'poll',
    async subscribe(_orderId, wake) {
      const timer = setInterval(wake, pollMs)
      return () => clearInterval(timer)
    },
    async close() {},
  }
}
