import { createServer, type IncomingMessage, type Server } from 'node:http'
import { freePort } from './free-port.ts'

/**
 * A local stand-in for an HTTP email API in the shape edgeshop's HTTP
 * mailer speaks (Resend-like): `POST /emails` with `Authorization: Bearer
 * <key>`, `Idempotency-Key`, and `{ from, to: [...], subject, text }`;
 * answers `{ id }`. A repeated Idempotency-Key answers the first id and sends
 * nothing again, as such providers do. `fail(n)` makes the next n calls
 * answer 503; `down()` stops answering at all (connections hang), and
 * `down('body')` sends the answer's headers and then nothing more;
 * `unanswered()` counts the calls held so (a client that gives up closes its
 * own).
 */
export async function startEmailApi(opts: { apiKey: string }) {
  const sent: { id: string; idempotencyKey: string; to: string[]; subject: string; text: string; from: string }[] = []
  const byKey = new Map<string, string>()
  const callsByKey = new Map<string, number>()
  let failures = 0
  let hanging: 'all' | 'body' | undefined
  let calls = 0
  const held = new Set<IncomingMessage>()
  const hold = (req: IncomingMessage) => {
    held.add(req)
    req.socket.once('close', () => held.delete(req))
  }
  const server: Server = createServer(async (req, res) => {
    calls++
    if (hanging === 'all') return hold(req)
    if (hanging === 'body') {
      for await (const _ of req);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '64' })
      res.write('{"id":')
      return hold(req)
    }
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    if (req.method !== 'POST' || req.url !== '/emails') return void res.writeHead(404).end()
    if (req.headers.authorization !== `Bearer ${opts.apiKey}`)
      return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"message":"invalid key"}')
    const callKey = String(req.headers['idempotency-key'] ?? '')
    callsByKey.set(callKey, (callsByKey.get(callKey) ?? 0) + 1)
    if (failures > 0) {
      failures--
      return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"message":"try later"}')
    }
    const key = String(req.headers['idempotency-key'] ?? '')
    const known = key ? byKey.get(key) : undefined
    if (known) return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: known }))
    const body = JSON.parse(Buffer.concat(chunks).toString()) as { from: string; to: string[]; subject: string; text: string }
    const id = `em_${sent.length + 1}_${Math.random().toString(36).slice(2, 8)}`
    if (key) byKey.set(key, id)
    sent.push({ id, idempotencyKey: key, ...body })
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id }))
  })
  const port = await freePort()
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${port}/emails`,
    sent,
    calls: () => calls,
    callsByKey,
    fail(n: number) {
      failures = n
    },
    down(what: 'all' | 'body' = 'all') {
      hanging = what
    },
    up() {
      hanging = undefined
      for (const req of held) req.socket.destroy()
      held.clear()
    },
    unanswered: () => held.size,
    async close() {
      for (const req of held) req.socket.destroy()
      held.clear()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}
