import { createHash } from 'node:crypto'

/*
 * Bytes of text, and their SHA-256. Base64 itself is `Buffer`'s from
 * `node:buffer` (`toString('base64url')`, `Buffer.from(text, 'base64url')`),
 * native on Bun, Node and Workers with `nodejs_compat` (docs/DECISIONS.md).
 */

const encoder = new TextEncoder()
export const utf8 = (s: string) => encoder.encode(s)

/**
 * SHA-256 of a string, as lowercase hex. Synchronous, through `node:crypto`
 * (Bun, Node, and Workers with `nodejs_compat`): WebCrypto's `digest` hands
 * the work to another thread and back, which cost 45 µs (Bun) to 190 µs
 * (Node) a call against 1 µs here, and ~10% of a checkout's CPU time.
 */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex')
}
