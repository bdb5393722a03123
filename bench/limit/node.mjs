// The Node limit: node:http answering every request with the exact bytes of
// a cached product answer (BODY), nothing else. `PORT=… BODY=… node bench/limit/node.mjs`
import http from 'node:http'

const body = Buffer.from(process.env.BODY ?? '{}')
const server = http
  .createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length })
    res.end(body)
  })
  .listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1')
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)))
