import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buffer } from 'node:stream/consumers'
import { gunzipSync } from 'node:zlib'

/*
 * A local OTLP/HTTP receiver, as a collector speaks the protocol: `POST
 * /v1/traces` with an `ExportTraceServiceRequest` in its JSON encoding
 * (what `@opentelemetry/exporter-trace-otlp-http` sends: ids as hex strings,
 * attribute values as `{ stringValue | intValue | boolValue | doubleValue }`),
 * gzip or not; answered `200 {}` (a full success). Protobuf is refused with
 * 415, so a change of the exporter's encoding shows at once. With
 * `keep: false` (the bench's) it only counts what arrives.
 */

/** One span as received, flattened with its resource's `service.name`. */
export interface ReceivedSpan {
  service: string
  scope: string
  traceId: string
  spanId: string
  /** Empty for a root span. */
  parentSpanId: string
  name: string
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number
  attributes: Record<string, string | number | boolean>
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  statusCode: number
  startNs: bigint
  endNs: bigint
  /** The span's events (an L1 cache hit, …), in order. */
  events: { name: string; attributes: Record<string, string | number | boolean> }[]
}

interface AnyValue {
  stringValue?: string
  intValue?: string | number
  boolValue?: boolean
  doubleValue?: number
}
interface KeyValue {
  key: string
  value: AnyValue
}
interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: KeyValue[] }
    scopeSpans?: {
      scope?: { name?: string }
      spans?: {
        traceId: string
        spanId: string
        parentSpanId?: string
        name: string
        kind?: number
        startTimeUnixNano?: string | number
        endTimeUnixNano?: string | number
        attributes?: KeyValue[]
        events?: { name: string; attributes?: KeyValue[] }[]
        status?: { code?: number }
      }[]
    }[]
  }[]
}

const valueFrom = (v: AnyValue): string | number | boolean =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.boolValue ?? v.doubleValue ?? ''))

const attributesOf = (list: KeyValue[] | undefined) => Object.fromEntries((list ?? []).map((a) => [a.key, valueFrom(a.value)]))

export interface OtlpReceiver {
  /** The base URL to give as OTEL_EXPORTER_OTLP_ENDPOINT. */
  url: string
  /** Every span received so far. */
  spans(): ReceivedSpan[]
  /** How many export requests arrived. */
  readonly exports: number
  /** Their bodies' bytes, as sent. */
  readonly bytes: number
  close(): Promise<void>
}

/**
 * @example
 * ```ts
 * const otlp = await startOtlpReceiver()
 * await startAppServer('bun', { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url })
 * expect(otlp.spans().some((s) => s.name === 'POST /v1/orders')).toBe(true)
 * ```
 */
export async function startOtlpReceiver(opts: { keep?: boolean } = {}): Promise<OtlpReceiver> {
  const keep = opts.keep ?? true
  const received: ReceivedSpan[] = []
  let exports = 0
  let bytes = 0
  const server = createServer(async (req, res) => {
    const raw = await buffer(req)
    if (req.method !== 'POST' || req.url !== '/v1/traces') {
      res.writeHead(404).end()
      return
    }
    if (!String(req.headers['content-type'] ?? '').startsWith('application/json')) {
      res.writeHead(415).end()
      return
    }
    exports++
    bytes += raw.length
    if (!keep) {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}')
      return
    }
    const text = (req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw).toString('utf8')
    const parsed = JSON.parse(text) as ExportRequest
    for (const rs of parsed.resourceSpans ?? []) {
      const service = String(attributesOf(rs.resource?.attributes)['service.name'] ?? '')
      for (const ss of rs.scopeSpans ?? [])
        for (const s of ss.spans ?? [])
          received.push({
            service,
            scope: ss.scope?.name ?? '',
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? '',
            name: s.name,
            kind: s.kind ?? 0,
            attributes: attributesOf(s.attributes),
            statusCode: s.status?.code ?? 0,
            startNs: BigInt(s.startTimeUnixNano ?? 0),
            endNs: BigInt(s.endTimeUnixNano ?? 0),
            events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attributesOf(e.attributes) })),
          })
    }
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () => [...received],
    get exports() {
      return exports
    },
    get bytes() {
      return bytes
    },
    close: () => new Promise((r) => server.close(() => r())),
  }
}
