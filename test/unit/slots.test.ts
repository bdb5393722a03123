import { describe, expect, it } from 'vitest'
import { createSlots } from '../../src/lib/slots.ts'

describe('slots', () => {
  it('grants up to its size at once, then one per release, in arrival order', async () => {
    const slots = createSlots(2)
    const a = await slots.acquire(1000)
    const b = await slots.acquire(1000)
    expect(slots.busy).toBe(2)
    const order: string[] = []
    const c = slots.acquire(1000).then((r) => {
      order.push('c')
      return r
    })
    const d = slots.acquire(1000).then((r) => {
      order.push('d')
      return r
    })
    expect(slots.waiting).toBe(2)
    a!()
    a!() // a second call gives nothing more back
    const rc = await c
    expect(order).toEqual(['c'])
    expect(slots.busy).toBe(2)
    b!()
    const rd = await d
    expect(order).toEqual(['c', 'd'])
    rc!()
    rd!()
    expect({ busy: slots.busy, waiting: slots.waiting }).toEqual({ busy: 0, waiting: 0 })
  })

  it('a waiter that gets nothing in time gets undefined and leaves the queue', async () => {
    const slots = createSlots(1)
    const held = await slots.acquire(1000)
    const started = Date.now()
    expect(await slots.acquire(30)).toBeUndefined()
    expect(Date.now() - started).toBeGreaterThanOrEqual(25)
    expect(slots.waiting).toBe(0)
    const later = slots.acquire(1000)
    held!()
    const next = await later
    expect(slots.busy).toBe(1)
    next!()
    expect(slots.busy).toBe(0)
  })
})
