/** Deeper than any body the API accepts; sorting deeper would only risk the stack. */
const MAX_DEPTH = 64

const TOO_DEEP = Symbol('too deep')

/**
 * JSON with object keys sorted at every depth: two bodies that mean the same
 * thing have the same text, whatever the client's key order or spacing.
 * Text that is not JSON, or nests deeper than 64 levels, is returned as it is.
 */
export function canonicalJson(text: string): string {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return text
  }
  const sorted = sortKeys(value, 0)
  return sorted === TOO_DEEP ? text : JSON.stringify(sorted)
}

function sortKeys(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value
  if (depth > MAX_DEPTH) return TOO_DEEP
  if (Array.isArray(value)) {
    const out: unknown[] = []
    for (const item of value) {
      const sorted = sortKeys(item, depth + 1)
      if (sorted === TOO_DEEP) return TOO_DEEP
      out.push(sorted)
    }
    return out
  }
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(value).sort()) {
    const sorted = sortKeys((value as Record<string, unknown>)[key], depth + 1)
    if (sorted === TOO_DEEP) return TOO_DEEP
    out[key] = sorted
  }
  return out
}
