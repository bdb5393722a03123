import type { Context } from 'hono'
import type { HttpServices } from './context.ts'

/**
 * The client's address, from what cannot be forged: the socket's peer on Bun
 * and Node, `CF-Connecting-IP` on Workers (Cloudflare sets it). Behind
 * `TRUSTED_PROXIES` reverse proxies, the entry of `X-Forwarded-For` that the
 * outermost trusted proxy appended: each proxy appends its peer, so with N
 * trusted proxies the client is the N-th entry from the right; anything left
 * of it was written by the client. Missing entries fall back to the peer.
 */
export function clientIp(c: Context, services: Pick<HttpServices, 'config' | 'peerAddress'>): string {
  const peer = services.peerAddress(c)
  const trusted = services.config.trustedProxies
  if (trusted > 0 && services.config.runtime !== 'workers') {
    const header = c.req.header('x-forwarded-for')
    if (header) {
      const hops = header
        .split(',')
        .map((h) => h.trim())
        .filter(Boolean)
      if (hops.length >= trusted) return hops[hops.length - trusted]!
    }
  }
  return peer ?? 'unknown'
}

/** The part of an address a rate limit should count: IPv4 as is, IPv6 by /64 (one subscriber's prefix). */
export function rateLimitSubject(ip: string): string {
  const v4 = ip.startsWith('::ffff:') ? ip.slice(7) : ip
  if (!v4.includes(':')) return v4
  const [head, tail = ''] = v4.split('::') as [string, string?]
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`
}
