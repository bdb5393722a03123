import { getConnInfo } from 'hono/bun'
import { type HttpAdapter, main } from './process.ts'

/** Serving with `Bun.serve`; the peer address comes from the socket (Hono's getConnInfo: `server.requestIP`). */
export const bunAdapter: HttpAdapter = {
  name: 'bun',
  // Bun hands over a Request anyway: the app's fetch takes the early route.
  takesEarlyRoute: false,
  async listen(fetch, { port, host, reusePort }) {
    const server = Bun.serve({
      port,
      hostname: host,
      // Explicit: with `development: false` Bun sets SO_REUSEPORT unless told otherwise, and a second
      // process on the port would start without error and get part of the connections.
      reusePort,
      idleTimeout: 60,
      development: false,
      fetch: (req, srv) => fetch(req, srv),
    })
    return {
      port: server.port ?? port,
      async stop(graceMs) {
        const timer = setTimeout(() => server.stop(true), graceMs)
        await server.stop(false)
        clearTimeout(timer)
      },
    }
  },
  peerAddress: (c) => getConnInfo(c).remote.address,
}

if (import.meta.main) await main(bunAdapter)
