/*
 * Starts edgeshop on Bun in this process (the same startServer as
 * src/runtime/bun.ts), answers one request, stops, and prints which
 * OpenTelemetry SDK modules (anything of @opentelemetry/ but the API, and
 * @hono/otel) the process loaded: `{"sdkModules":[...]}`. Bun lists every
 * module it loaded, ESM included, in `require.cache`.
 *
 *   DATABASE_URL=... bun test/support/sdk-probe.ts
 */
import { bunAdapter } from '../../src/runtime/bun.ts'
import { startServer } from '../../src/runtime/process.ts'
import { freePort } from './free-port.ts'

const server = await startServer(bunAdapter, { ...process.env, PORT: String(await freePort()), HOST: '127.0.0.1' })
await (await fetch(`${server.url}/healthz`)).arrayBuffer()
await server.stop()
const sdkModules = Object.keys(require.cache).filter((path) => /node_modules\/(@opentelemetry\/(?!api\/)|@hono\/otel\/)/.test(path))
process.stdout.write(`${JSON.stringify({ sdkModules })}\n`)
process.exit(0)
