import { expect } from 'vitest'

export interface ProblemBody {
  type: string
  title: string
  status: number
  detail?: string
  code: string
  requestId: string
  errors?: { path: string; message: string }[]
}

/** Asserts an RFC 9457 answer with this status and code, and returns its body. */
export async function expectProblem(res: Response, status: number, code: string): Promise<ProblemBody> {
  const text = await res.text()
  expect(res.status, text).toBe(status)
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  const body = JSON.parse(text) as ProblemBody
  expect(body.code).toBe(code)
  expect(body.status).toBe(status)
  expect(typeof body.title).toBe('string')
  expect(body.type).toBe(`/docs#error-${code}`)
  expect(body.requestId).toBe(res.headers.get('x-request-id'))
  expect(text).not.toMatch(/\bat .+\(.+:\d+:\d+\)|node_modules|postgres(ql)?:\/\//)
  return body
}
