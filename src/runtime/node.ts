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
              const timer = setTimeout(() => {
                if ('closeAllConnections' in server) server.closeAllConnections()
                done()
              }, graceMs)
              server.close(() => {
                clearTimeout(timer)
                done()
              })
              if ('closeIdleConnections' in server) server.closeIdleConnections()
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
