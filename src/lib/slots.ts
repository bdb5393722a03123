/** Gives a slot back; calling it twice gives back one. */
export type Release = () => void

export interface Slots {
  /** A slot within `waitMs`, in arrival order, or `undefined` when none came free in time. */
  acquire(waitMs: number): Promise<Release | undefined>
  /** Holders and waiters now (for metrics and tests). */
  readonly busy: number
  readonly waiting: number
}

/**
 * At most `size` holders at once; the others wait in arrival order, each no
 * longer than it asked to. Job deliveries take one so that a burst of them
 * (QStash catching up after an outage) cannot take every pooled database
 * connection from the requests customers are waiting on.
 *
 * @example
 * ```ts
 * const slots = createSlots(2)
 * const release = await slots.acquire(10_000)
 * if (!release) throw new AppError('service_unavailable', 'busy; retry')
 * try { await work() } finally { release() }
 * ```
 */
export function createSlots(size: number): Slots {
  let busy = 0
  const queue: { grant: (r: Release) => void; timer: ReturnType<typeof setTimeout> }[] = []

  const release = (): Release => {
    let done = false
    return () => {
      if (done) return
      done = true
      const next = queue.shift()
      if (next) {
        clearTimeout(next.timer)
        next.grant(release())
      } else busy--
    }
  }

  return {
    acquire(waitMs) {
      if (busy < size) {
        busy++
        return Promise.resolve(release())
      }
      return new Promise((resolve) => {
        const entry = {
          grant: resolve,
          timer: setTimeout(() => {
            const at = queue.indexOf(entry)
            if (at >= 0) queue.splice(at, 1)
            resolve(undefined)
          }, waitMs),
        }
        queue.push(entry)
      })
    },
    get busy() {
      return busy
    },
    get waiting() {
      return queue.length
    },
  }
}
