import { connect, createServer, type Socket } from 'node:net'

/*
 * A TCP proxy in front of a real server (PostgreSQL) that can be switched to
 * a stall: connections are still accepted, but nothing moves in either
 * direction and nothing is closed — a network partition, or a primary frozen
 * in place. Bytes sent meanwhile wait in the kernel's buffers, as they would
 * in a partition's retransmissions or a frozen server's socket, and are
 * delivered when it is lifted; connections accepted during the stall reach
 * the server only then.
 */

export interface TcpProxy {
  port: number
  /** Connections accepted so far (each is one client socket). */
  readonly accepted: number
  /** Round trips so far: the times a client sent after its server last spoke (or first), over all connections. */
  readonly roundTrips: number
  /** Stops forwarding on every connection, present and future, without closing any. */
  freeze(): void
  /** Forwards again: what waited is delivered, held connections reach the server. */
  thaw(): void
  close(): Promise<void>
}

interface Pair {
  client: Socket
  upstream: Socket | undefined
  /** Whether the upstream spoke last on this connection: the client's next bytes start a round trip. */
  answered: boolean
}

/**
 * @example
 * ```ts
 * const proxy = await startTcpProxy(pg.port)
 * proxy.freeze() // clients of 127.0.0.1:proxy.port now wait for answers that never come
 * proxy.thaw()
 * await proxy.close()
 * ```
 */
export async function startTcpProxy(upstreamPort: number, upstreamHost = '127.0.0.1'): Promise<TcpProxy> {
  const pairs = new Set<Pair>()
  let frozen = false
  let accepted = 0
  let roundTrips = 0

  const drop = (pair: Pair) => {
    pairs.delete(pair)
    pair.client.destroy()
    pair.upstream?.destroy()
  }

  /** Copies `from` to `to`, holding `from` while `to` is full, and never while the proxy is frozen. */
  const forward = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => {
      if (!to.write(chunk)) from.pause()
    })
    to.on('drain', () => {
      if (!frozen) from.resume()
    })
    from.on('end', () => to.end())
  }

  const link = (pair: Pair) => {
    const upstream = connect(upstreamPort, upstreamHost)
    pair.upstream = upstream
    upstream.on('error', () => drop(pair))
    upstream.on('close', () => drop(pair))
    pair.client.on('data', () => {
      if (pair.answered) roundTrips++
      pair.answered = false
    })
    upstream.on('data', () => {
      pair.answered = true
    })
    forward(pair.client, upstream)
    forward(upstream, pair.client)
    pair.client.resume()
  }

  const server = createServer({ pauseOnConnect: true }, (client) => {
    accepted++
    const pair: Pair = { client, upstream: undefined, answered: true }
    pairs.add(pair)
    client.on('error', () => drop(pair))
    client.on('close', () => drop(pair))
    if (!frozen) link(pair)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))

  return {
    port: (server.address() as { port: number }).port,
    get accepted() {
      return accepted
    },
    get roundTrips() {
      return roundTrips
    },
    freeze() {
      frozen = true
      // Not reading is the stall: the kernel buffers fill, and TCP's flow control holds the sender.
      for (const { client, upstream } of pairs) {
        client.pause()
        upstream?.pause()
      }
    },
    thaw() {
      frozen = false
      for (const pair of pairs) {
        if (!pair.upstream) link(pair)
        pair.client.resume()
        pair.upstream!.resume()
      }
    },
    async close() {
      for (const pair of pairs) drop(pair)
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
