// The Bun limit: Bun.serve answering every request with the exact bytes of a
// cached product answer (BODY), nothing else. `PORT=… BODY=… bun bench/limit/bun.ts`
// With HEADERS (a JSON record) it sends those headers instead of Content-Type
// alone, and a new X-Request-Id per answer when the record names one: the
// limit for an answer carrying everything edgeshop's does.
const body = process.env.BODY ?? '{}'
const headers: Record<string, string> = JSON.parse(process.env.HEADERS ?? '{"Content-Type":"application/json"}')
const withId = Object.keys(headers).some((name) => name.toLowerCase() === 'x-request-id')
const rest = Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'x-request-id'))
let n = 0
const server = Bun.serve({
  port: Number(process.env.PORT),
  hostname: process.env.HOST ?? '127.0.0.1',
  fetch: withId
    ? () => new Response(body, { headers: { ...rest, 'x-request-id': `limit-${++n}` } })
    : () => new Response(body, { headers }),
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.stop(true).then(() => process.exit(0)))
