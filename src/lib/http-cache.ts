/** Public answers may be kept by HTTP caches for 5 s and served stale for 30 s while revalidating. */
export const PUBLIC_CACHE_CONTROL = 'public, max-age=5, stale-while-revalidate=30'

/** Whether `If-None-Match` matches `etag` (weak comparison, RFC 9110 §13.1.2). */
export function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false
  if (header.trim() === '*') return true
  const bare = etag.replace(/^W\//, '')
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === bare)
}

/**
 * The versions an `If-Match` header accepts (strong comparison: weak tags
 * never match): `'any'` for `*`, otherwise the list of `"<n>"` versions.
 */
export function ifMatchVersions(header: string | undefined): 'any' | number[] | undefined {
  if (header === undefined) return undefined
  if (header.trim() === '*') return 'any'
  const versions: number[] = []
  for (const tag of header.split(',')) {
    const m = tag.trim().match(/^"(\d{1,9})"$/)
    if (m) versions.push(Number(m[1]))
  }
  return versions
}

/** A short, stable hash of a body for weak ETags (FNV-1a, 32 bits). */
export function fnv1a(text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0).toString(36)
}
