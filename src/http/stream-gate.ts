import { AppError } from '../core/errors.ts'

/** One open stream's place. */
export interface StreamLease {
  /** True once the process is shutting down: the stream must end. */
  readonly closed: boolean
  /** Gives the place back; a second call does nothing. */
  release(): void
}

/**
 * Bounds the long-lived streams (server-sent events) of this process: at
 * most `perUser` open at once per user and `perInstance` in all. Each stream
 * holds a lease while it is open; `close()` (shutdown) ends every stream, and
 * a stream opened after it ends at once, so that graceful shutdown is not
 * held by clients that never hang up.
 */
export interface StreamGate {
  /** Streams open now, in this process. */
  readonly open: number
  /**
   * A place for one more stream of `userId`, or 429 `too_many_streams` (with `Retry-After`) past either bound.
   * `onClose` runs when the gate closes while the lease is held.
   */
  acquire(userId: string, onClose: () => void): StreamLease
  /** Ends every stream, and every stream opened from now on. */
  close(): void
}

/**
 * @example
 * ```ts
 * const gate = createStreamGate({ perUser: 5, perInstance: 1000 })
 * const lease = gate.acquire(principal.userId, () => stream.wake())
 * try { ... } finally { lease.release() }
 * ```
 */
export function createStreamGate(limits: { perUser: number; perInstance: number }): StreamGate {
  const byUser = new Map<string, number>()
  // One callback per open stream, not an AbortSignal shared by them all: Node warns past 10 listeners on one signal.
  const closers = new Set<() => void>()
  let closed = false
  let open = 0
  const refuse = (detail: string) => new AppError('too_many_streams', detail, { headers: { 'Retry-After': '5' } })

  return {
    get open() {
      return open
    },
    acquire(userId, onClose) {
      const mine = byUser.get(userId) ?? 0
      if (mine >= limits.perUser) throw refuse(`At most ${limits.perUser} event streams may be open at once per user; close one first`)
      if (open >= limits.perInstance) throw refuse('This instance holds as many event streams as it may; retry shortly')
      byUser.set(userId, mine + 1)
      open++
      closers.add(onClose)
      let released = false
      return {
        get closed() {
          return closed
        },
        release() {
          if (released) return
          released = true
          closers.delete(onClose)
          open--
          const left = (byUser.get(userId) ?? 1) - 1
          if (left > 0) byUser.set(userId, left)
          else byUser.delete(userId)
        },
      }
    },
    close() {
      closed = true
      for (const onClose of closers) onClose()
    },
  }
}
