import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type HttpBindings, serve } from '@hono/node-server'
import { type HttpAdapter, main } from './process.ts'

/** Serving with `node:http` through `@hono/node-server`; the peer address comes from the socket. */
export const nodeAdapter: HttpAdapter = {
  name: 'node',
  listen(fetch, { port, host }) {
    return new Promise((resolve, reject) => {
      const server = serve({ fetch, port, hostname: host }, (info: AddressInfo) => {
        resolve({
          port: info.port,
          stop: (graceMs) =>
            new Promise<void>((done) => {
              const http = server as Server
              // Keep-alive connections become idle as their responses finish: close each then, not at the end of the grace period.
              const sweep = setInterval(() => http.closeIdleConnections(), 25)
              const timer = setTimeout(() => {
                http.closeAllConnections()
                finish()
              }, graceMs)
              const finish = () => {
                clearInterval(sweep)
                clearTimeout(timer)
                done()
              }
              http.close(() => finish())
              http.closeIdleConnections()
            }),
        })
      })
      server.once('error', reject)
      if ('keepAliveTimeout' in server) server.keepAliveTimeout = 60_000
    })
  },
  peerAddress: (c) => (c.env as HttpBindings | undefined)?.incoming?.socket?.remoteAddress,
}

if (import.meta.main) await main(nodeAdapter)
