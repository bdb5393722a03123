import { describe, expect, it } from 'vitest'
import { runStatement } from '../../src/db/database.ts'
import { DAILY, runSchedule } from '../../src/features/schedule/index.ts'
import { createLogger } from '../../src/observability/logger.ts'
import { createMetrics } from '../../src/observability/metrics.ts'
import { createTestApp } from '../support/test-app.ts'

describe('logger', () => {
  it('writes one JSON object per line, at or above its level', () => {
    const lines: string[] = []
    const log = createLogger({ level: 'warn', sink: (l) => lines.push(l), base: { runtime: 'node' } })
    log.info('hidden')
    log.warn('shown', { n: 1 })
    expect(lines).toHaveLength(1)
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'warn', msg: 'shown', n: 1, runtime: 'node' })
    expect(log.enabled('info')).toBe(false)
  })

  it('redacts fields that name a secret, at any depth', () => {
    const lines: string[] = []
    const log = createLogger({ level: 'info', sink: (l) => lines.push(l) })
    log.info('login', {
      password: 'hunter2',
      user: { email: 'a@b.c', refreshToken: 'rt-123', nested: { authorization: 'Bearer x', databaseUrl: 'postgres://u:p@h/d' } },
      JWT_SECRET: 'shh',
      err: new Error('boom'),
    })
    const text = lines.join('')
    for (const secret of ['hunter2', 'rt-123', 'Bearer x', 'postgres://', 'shh']) expect(text).not.toContain(secret)
    expect(JSON.parse(text).user.email).toBe('a@b.c')
    expect(JSON.parse(text).err).toEqual({ name: 'Error', message: 'boom' })
  })

  it('keeps counts and flags whose names mention a secret, and still redacts the secrets beside them', () => {
    const lines: string[] = []
    const log = createLogger({ level: 'info', sink: (l) => lines.push(l) })
    log.info('schedule ran', {
      purgedRefreshTokens: 12,
      passwordRehashed: true,
      session: { revokedTokens: 3, refreshToken: 'rt-456' },
      apiKey: '12345',
      secret: { nested: 'shh' },
    })
    const line = JSON.parse(lines[0]!)
    expect(line).toMatchObject({
      purgedRefreshTokens: 12,
      passwordRehashed: true,
      session: { revokedTokens: 3, refreshToken: '[redacted]' },
    })
    expect(line.apiKey).toBe('[redacted]')
    expect(line.secret).toBe('[redacted]')
    expect(lines[0]).not.toContain('rt-456')
    expect(lines[0]).not.toContain('shh')
  })

  it('keeps its own time, level and msg when a call passes fields of the same names', () => {
    const lines: string[] = []
    const log = createLogger({ level: 'info', sink: (l) => lines.push(l) })
    log.info('real', { time: 'forged', level: 'error', msg: 'forged', nested: { msg: 'kept' } })
    expect(lines[0]!.match(/"msg":/g)).toHaveLength(2)
    expect(lines[0]!.match(/"level":/g)).toHaveLength(1)
    const line = JSON.parse(lines[0]!)
    expect(line).toMatchObject({ level: 'info', msg: 'real', nested: { msg: 'kept' } })
    expect(Date.parse(line.time)).not.toBeNaN()
  })

  it('gives each line its own level and msg when lines of one millisecond differ', () => {
    const lines: string[] = []
    const log = createLogger({ level: 'info', sink: (l) => lines.push(l) })
    // The head (time, level, msg) is kept between lines: it must follow the level and the message, not only the clock.
    log.info('first')
    log.warn('first')
    log.warn('second')
    log.serialized('info', 'request', '"n":1')
    log.info('first')
    expect(lines.map((l) => JSON.parse(l)).map((l) => [l.level, l.msg])).toEqual([
      ['info', 'first'],
      ['warn', 'first'],
      ['warn', 'second'],
      ['info', 'request'],
      ['info', 'first'],
    ])
  })
})

describe('the daily purge', () => {
  it('logs how many refresh tokens it purged as a number', async () => {
    const t = await createTestApp()
    try {
      const signup = await t.app.request('/v1/auth/signup', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: 'purged@example.test', password: 'a long enough password', name: 'P' }),
      })
      expect(signup.status).toBe(201)
      // A day well past the token's 30-day lifetime, at the daily slot.
      const later = new Date(Date.now() + 40 * 24 * 3600 * 1000)
      later.setUTCHours(3, 0, 30, 0)
      expect(await runSchedule(DAILY, later, t.services.schedule(t.services.scope()))).toMatchObject({ ran: true, purgedRefreshTokens: 1 })
      expect(t.logs.find((l) => l.msg === 'schedule ran')).toMatchObject({ schedule: DAILY, purgedRefreshTokens: 1 })
    } finally {
      await t.close()
    }
  })
})

describe('metrics', () => {
  it('waits for work before a scrape, but no longer than its bound', async () => {
    const metrics = createMetrics()
    let value = 1
    let answer: (() => void) | undefined
    metrics.gauge('edgeshop_test_read', 'A value read elsewhere', () => value)
    metrics.beforeScrape(() => new Promise<void>((r) => (answer = r)).then(() => (value = 2)), 50)
    const first = metrics.scrape()
    answer!()
    expect(await first).toContain('edgeshop_test_read 2\n')
    // A read that never answers: the scrape renders the last value once its bound has passed.
    const started = performance.now()
    expect(await metrics.scrape()).toContain('edgeshop_test_read 2\n')
    expect(performance.now() - started).toBeGreaterThanOrEqual(45)
  })

  it('renders counters, cumulative histograms and gauges in the Prometheus text format', () => {
    const m = createMetrics()
    const c = m.counter('t_requests_total', 'Requests', ['route', 'status'])
    c.inc({ route: '/a', status: 200 })
    c.inc({ route: '/a', status: 200 }, 2)
    c.inc({ route: '/"b"\n', status: 500 })
    const h = m.histogram('t_latency_seconds', 'Latency', ['route'], [0.01, 0.1, 1])
    h.observe({ route: '/a' }, 0.005)
    h.observe({ route: '/a' }, 0.05)
    h.observe({ route: '/a' }, 5)
    m.gauge('t_pool_max', 'Pool size', () => 10)
    m.gauge('t_jobs', 'Jobs by status', () => [{ labels: { status: 'dead' }, value: 2 }])
    const text = m.render()
    expect(text).toContain('# TYPE t_requests_total counter\n')
    expect(text).toContain('t_requests_total{route="/a",status="200"} 3\n')
    expect(text).toContain('t_requests_total{route="/\\"b\\"\\n",status="500"} 1\n')
    expect(text).toContain('t_latency_seconds_bucket{route="/a",le="0.01"} 1\n')
    expect(text).toContain('t_latency_seconds_bucket{route="/a",le="0.1"} 2\n')
    expect(text).toContain('t_latency_seconds_bucket{route="/a",le="1"} 2\n')
    expect(text).toContain('t_latency_seconds_bucket{route="/a",le="+Inf"} 3\n')
    expect(text).toContain('t_latency_seconds_count{route="/a"} 3\n')
    expect(text).toContain('t_latency_seconds_sum{route="/a"} 5.055\n')
    expect(text).toContain('t_pool_max 10\n')
    expect(text).toContain('t_jobs{status="dead"} 2\n')
  })

  it('records through a series found once (`with`) into the same series as by labels', () => {
    const m = createMetrics()
    const c = m.counter('t_hits_total', 'Hits', ['tier', 'result'])
    const hits = c.with({ tier: 'l1', result: 'hit' })
    hits.inc()
    hits.inc(2)
    c.inc({ tier: 'l1', result: 'hit' })
    c.inc({ tier: 'l1', result: 'miss' })
    const h = m.histogram('t_seconds', 'Latency', ['route'], [0.01, 1])
    const a = h.with({ route: '/a' })
    a.observe(0.005)
    h.observe({ route: '/a' }, 0.5)
    const text = m.render()
    expect(text).toContain('t_hits_total{tier="l1",result="hit"} 4\n')
    expect(text).toContain('t_hits_total{tier="l1",result="miss"} 1\n')
    expect(text.match(/t_hits_total\{/g)).toHaveLength(2)
    expect(text).toContain('t_seconds_bucket{route="/a",le="0.01"} 1\n')
    expect(text).toContain('t_seconds_bucket{route="/a",le="1"} 2\n')
    expect(text).toContain('t_seconds_count{route="/a"} 2\n')
  })
})

describe('job metrics', () => {
  /** The value of a series in Prometheus text, or undefined when it is absent. */
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `))
    return line === undefined ? undefined : Number(line.slice(series.length + 1))
  }

  it("report the queue's depth across instances and each run's result by job name", async () => {
    const t = await createTestApp()
    try {
      const insert = (name: string, status: string, runAt: string, maxAttempts = 5) =>
        runStatement(
          t.database.db,
          `insert into jobs (id, name, payload, status, max_attempts, run_at)
           values (gen_random_uuid(), $1, '{"orderId":"00000000-0000-7000-8000-000000000000"}', $2, $3, now() + $4::interval)`,
          [name, status, maxAttempts, runAt],
        )
      await insert('order.expire', 'pending', '-90 seconds')
      await insert('no.such.job', 'pending', '-30 seconds', 1)
      await insert('no.such.job', 'pending', '-10 seconds', 5)
      await insert('order.expire', 'pending', '1 hour') // not due yet
      await insert('order.expire', 'dead', '-1 day')
      await insert('order.expire', 'succeeded', '-1 day')

      const before = await t.services.metrics!.scrape()
      expect(value(before, 'edgeshop_job_queue_due')).toBe(3)
      expect(value(before, 'edgeshop_job_queue_dead')).toBe(1)
      expect(value(before, 'edgeshop_job_queue_oldest_due_seconds')).toBeGreaterThanOrEqual(89)
      expect(value(before, 'edgeshop_job_queue_oldest_due_seconds')).toBeLessThan(120)
      expect(value(before, 'edgeshop_jobs_waiting_for_handover')).toBeUndefined() // QStash is not configured

      expect(await t.services.drainJobs(t.services.scope(), 10)).toBe(3)
      const after = await t.services.metrics!.scrape()
      expect(value(after, 'edgeshop_job_queue_due')).toBe(0)
      expect(value(after, 'edgeshop_job_queue_oldest_due_seconds')).toBe(0)
      expect(value(after, 'edgeshop_job_queue_dead')).toBe(2)
      expect(value(after, 'edgeshop_jobs_running')).toBe(0)
      expect(value(after, 'edgeshop_job_runs_total{name="order.expire",result="succeeded"}')).toBe(1)
      expect(value(after, 'edgeshop_job_runs_total{name="no.such.job",result="dead"}')).toBe(1)
      expect(value(after, 'edgeshop_job_runs_total{name="no.such.job",result="retry"}')).toBe(1)
      expect(value(after, 'edgeshop_job_run_duration_seconds_count{name="no.such.job"}')).toBe(2)
    } finally {
      await t.close()
    }
  })
})
