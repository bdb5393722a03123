// The Workers limit: a bare worker answering every request with the exact
// bytes of a cached product answer (BODY) and the headers edgeshop's answer
// carries (HEADERS, a JSON record), a new X-Request-Id each when the record
// names one; nothing else. Runs beside edgeshop in the same workerd
// (bench/workerd.ts), with BODY and HEADERS as text bindings.
let headers
let withId = false
let n = 0

export default {
  fetch(_request, env) {
    if (!headers) {
      headers = JSON.parse(env.HEADERS ?? '{"Content-Type":"application/json"}')
      withId = Object.keys(headers).some((name) => name.toLowerCase() === 'x-request-id')
      headers = Object.fromEntries(Object.entries(headers).filter(([name]) => name.toLowerCase() !== 'x-request-id'))
    }
    return new Response(env.BODY ?? '{}', { headers: withId ? { ...headers, 'x-request-id': `limit-${++n}` } : headers })
  },
}
