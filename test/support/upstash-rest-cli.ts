/**
 * Runs the Upstash REST stand-in as a server of its own, for the compose
 * stack (docker-compose.yml) and for trying the distributed mode by hand:
 *
 *   REDIS_HOST=127.0.0.1 REDIS_PORT=6379 UPSTASH_TOKEN=dev-token PORT=8079 bun test/support/upstash-rest-cli.ts
 *
 * REDIS_DB selects a Redis database other than 0.
 *
 * The community image serverless-redis-http cannot run @upstash/ratelimit
 * 2.1+ scripts (their `allow-key-locking` flag; hiett/serverless-redis-http#40);
 * this stand-in strips the flag.
 */
import { startUpstashRest } from './upstash-rest.ts'

const env = process.env
const token = env.UPSTASH_TOKEN
if (!token) {
  process.stderr.write('UPSTASH_TOKEN is required\n')
  process.exit(2)
}
const rest = await startUpstashRest({
  redisHost: env.REDIS_HOST ?? '127.0.0.1',
  redisPort: Number(env.REDIS_PORT ?? 6379),
  token,
  host: env.HOST ?? '127.0.0.1',
  port: Number(env.PORT ?? 8079),
  ...(env.REDIS_DB ? { db: Number(env.REDIS_DB) } : {}),
})
process.stdout.write(`${JSON.stringify({ level: 'info', msg: `Upstash REST stand-in on ${rest.url}` })}\n`)
const stop = () => rest.close().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
