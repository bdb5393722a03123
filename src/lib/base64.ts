/** Base64 of bytes: standard alphabet without padding (PHC strings), or URL-safe (tokens). */
export function toBase64(bytes: Uint8Array, alphabet: 'standard' | 'url' = 'standard'): string {
  let bin = ''
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]!)
  const b64 = btoa(bin).replace(/=+$/, '')
  return alphabet === 'url' ? b64.replace(/\+/g, '-').replace(/\//g, '_') : b64
}

/** Decodes either alphabet, with or without padding. Throws on anything else. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) throw new Error('not base64')
  const std = text.replace(/-/g, '+').replace(/_/g, '/')
  const bin = atob(std + '='.repeat((4 - (std.length % 4)) % 4))
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}

const encoder = new TextEncoder()
export const utf8 = (s: string) => encoder.encode(s)

/** SHA-256 of a string, as lowercase hex. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', utf8(text)))
  let hex = ''
  for (const b of digest) hex += b.toString(16).padStart(2, '0')
  return hex
}
