// The Node limit: node:http answering every request with the exact bytes of
// a cached product answer (BODY), nothing else. `PORT=… BODY=… node bench/limit/node.mjs`
// With HEADERS (a JSON record) it sends those headers instead of Content-Type
// alone, and a new X-Request-Id per answer when the record names one: the
// limit for an answer carrying everything edgeshop's does.
import http from 'node:http'

const body = Buffer.from(process.env.BODY ?? '{}')
const headers = { ...JSON.parse(process.env.HEADERS ?? '{"Content-Type":"application/json"}'), 'Content-Length': body.length }
const withId = Object.keys(headers).some((name) => name.toLowerCase() === 'x-request-id')
const rest = Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'x-request-id'))
let n = 0
const server = http
  .createServer((_req, res) => {
    res.writeHead(200, withId ? { ...rest, 'x-request-id': `limit-${++n}` } : headers)
    res.end(body)
  })
  .listen(Number(process.env.PORT), process.env.HOST ?? '127.0.0.1')
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)))
