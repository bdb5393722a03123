import { describe, expect, it } from 'vitest'
import { statementName } from '../../src/db/statement-spans.ts'
import { sampledTraceId } from '../../src/observability/tracing.ts'

describe('statementName', () => {
  it('names a statement by its operation and first table, never by its text or values', () => {
    expect(statementName('select "id", "name" from "orders" where "orders"."id" = $1')).toEqual({ operation: 'select', table: 'orders' })
    expect(statementName('insert into "jobs" ("id", "name") values ($1, $2)')).toEqual({ operation: 'insert', table: 'jobs' })
    expect(statementName('update "orders" set "status" = $1')).toEqual({ operation: 'update', table: 'orders' })
    expect(statementName('delete from refresh_tokens where expires_at < $1')).toEqual({ operation: 'delete', table: 'refresh_tokens' })
    expect(statementName('\n  with lines as (select * from unnest($1::uuid[])) select 1')).toEqual({ operation: 'with', table: undefined })
    expect(statementName('set local plan_cache_mode = force_generic_plan')).toEqual({ operation: 'set', table: undefined })
    expect(statementName('')).toEqual({ operation: 'query', table: undefined })
  })
})

describe('sampledTraceId', () => {
  it('reads the trace id of a stored traceparent when its trace was sampled, and nothing else', () => {
    expect(sampledTraceId('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01')).toBe('4bf92f3577b34da6a3ce929d0e0e4736')
    expect(sampledTraceId('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03')).toBe('4bf92f3577b34da6a3ce929d0e0e4736')
    expect(sampledTraceId('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00')).toBeNull()
    expect(sampledTraceId('00-4bf92f3577b34da6a3ce929d0e0e4736-01')).toBeNull()
    expect(sampledTraceId(null)).toBeNull()
  })
})
