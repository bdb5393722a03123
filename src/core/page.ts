import { fromBase64, toBase64 } from '../lib/base64.ts'

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
  const hex = id.replace(/-/g, '')
  const bytes = new Uint8Array(16)
  for (let i = 0; i < 16; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return toBase64(bytes, 'url')
}

/** The id inside a cursor, or undefined when it is not one of ours. */
export function decodeCursor(cursor: string): string | undefined {
  let bytes: Uint8Array
  try {
    bytes = fromBase64(cursor)
  } catch {
    return undefined
  }
  if (bytes.length !== 16 || cursor.length !== 22) return undefined
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}
