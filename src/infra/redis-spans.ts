import type { Redis } from '@upstash/redis'
import { inSpan, traced } from '../observability/tracing.ts'

/**
 * Makes each call `redis` makes to Upstash's REST API, in traced work, a
 * CLIENT span named by its command (`redis GET`, `redis EVALSHA`, or
 * `redis PIPELINE` for several sent together), through the client's own middleware hook: the cache's
 * L2 reads and writes and the rate limiter's scripts alike. The span holds
 * the command's name, never its keys or values.
 *
 * @example
 * ```ts
 * const redis = traceRedisCommands(new Redis({ url, token }), url)
 * ```
 */
export function traceRedisCommands(redis: Redis, url: string): Redis {
  const host = new URL(url).host
  redis.use((req, next) => {
    if (!traced()) return next(req)
    // A command's body is its words; a pipeline's (the client batches commands made together), its commands.
    const body: unknown[] = Array.isArray(req.body) ? req.body : []
    const commands = body.every(Array.isArray) ? body.map((c) => String((c as unknown[])[0])) : [String(body[0] ?? req.path?.[0])]
    const command = commands.length === 1 ? commands[0]!.toUpperCase() : 'PIPELINE'
    const attributes = { 'db.system.name': 'redis', 'db.operation.name': command, 'server.address': host }
    if (commands.length > 1) Object.assign(attributes, { 'db.operation.batch.size': commands.length })
    return inSpan(`redis ${command}`, attributes, () => next(req))
  })
  return redis
}
