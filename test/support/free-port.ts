import { createServer } from 'node:net'

/**
 * Asks the kernel for a currently free TCP port on 127.0.0.1 (bind to port 0,
 * read the assigned port, release it). There is an unavoidable window between
 * releasing the port and the caller binding it; callers that spawn a server on
 * the port should retry with a fresh port if the bind fails.
 */
export function freePort(host: string = '127.0.0.1'): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen({ port: 0, host, exclusive: true }, () => {
      const address = srv.address()
      if (address === null || typeof address === 'string') {
        srv.close()
        reject(new Error('freePort: could not determine the bound port'))
        return
      }
      const { port } = address
      srv.close((err) => (err ? reject(err) : resolve(port)))
    })
  })
}
