import { createServer as createHttpServer, type RequestListener, type Server, type ServerOptions } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createAdaptorServer } from '@hono/node-server'
import { getConnInfo } from '@hono/node-server/conninfo'
import { type HttpAdapter, main } from './process.ts'

/** Serving with `node:http` through `@hono/node-server`; the peer address comes from the socket (its getConnInfo). */
export const nodeAdapter: HttpAdapter = {
  name: 'node',
  takesEarlyRoute: true,
  listen(fetch, { port, host, reusePort, early }) {
    // The early route is taken on node:http's own request, before `@hono/node-server` builds a Request
    // and reads back a Response: for the hot read that translation costs more than the answer.
    const earlyFirst =
      (routed: RequestListener): RequestListener =>
      (req, res) => {
        const answer = early?.(req.method ?? '', req.url ?? '', (name) => {
          const value = req.headers[name]
          return typeof value === 'string' ? value : undefined
        })
        if (answer === undefined) return routed(req, res)
        if (answer.body !== null) answer.headers['Content-Length'] = String(Buffer.byteLength(answer.body))
        res.writeHead(answer.status, answer.headers)
        res.end(answer.body ?? undefined)
      }
    return new Promise((resolve, reject) => {
      // `@hono/node-server` calls this with its own listener; its option is typed as every overload of `createServer`.
      const createServer = ((options: ServerOptions, routed: RequestListener) =>
        createHttpServer(options, earlyFirst(routed))) as typeof createHttpServer
      const server = createAdaptorServer({ fetch, hostname: host, createServer }) as Server
      server.once('error', reject)
      server.keepAliveTimeout = 60_000
      server.listen({ port, host, reusePort }, () => {
        const info = server.address() as AddressInfo
        resolve({
          port: info.port,
          stop: (graceMs) =>
            new Promise<void>((done) => {
              // Keep-alive connections become idle as their responses finish: close each then, not at the end of the grace period.
              const sweep = setInterval(() => server.closeIdleConnections(), 25)
              const timer = setTimeout(() => {
                server.closeAllConnections()
                finish()
              }, graceMs)
              const finish = () => {
                clearInterval(sweep)
                clearTimeout(timer)
                done()
              }
              server.close(() => finish())
              server.closeIdleConnections()
            }),
        })
      })
    })
  },
  peerAddress: (c) => getConnInfo(c).remote.address,
}

if (import.meta.main) await main(nodeAdapter)
