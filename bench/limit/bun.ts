// The Bun limit: Bun.serve answering every request with the exact bytes of a
// cached product answer (BODY), nothing else. `PORT=… BODY=… bun bench/limit/bun.ts`
const body = process.env.BODY ?? '{}'
const server = Bun.serve({
  port: Number(process.env.PORT),
  hostname: process.env.HOST ?? '127.0.0.1',
  fetch: () => new Response(body, { headers: { 'Content-Type': 'application/json' } }),
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => server.stop(true).then(() => process.exit(0)))
