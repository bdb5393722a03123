import { Buffer } from 'node:buffer'

/*
 * Lists are pages of at most `limit` items, newest first, walked with an
 * opaque cursor: the last id of the page before, which every list (products,
 * orders, jobs, emails) encodes the same way.
 */

/** One page of a list, as every list route answers it. */
export interface Page<T> {
  items: T[]
  nextCursor: string | null
}

/** A cursor is the last id of a page, as 22 URL-safe characters. */
export function encodeCursor(id: string): string {
  return Buffer.from(id.replace(/-/g, ''), 'hex').toString('base64url')
}

const CURSOR = /^[A-Za-z0-9_-]{22}$/

/** The id inside a cursor, or undefined when it is not one of ours. */
export function decodeCursor(cursor: string): string | undefined {
  if (!CURSOR.test(cursor)) return undefined
  const hex = Buffer.from(cursor, 'base64url').toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
