import { describe, expect, it } from 'vitest'
import { ConfigError, DEV_JWT_SECRET, loadConfig, parseConfig } from '../../src/config.ts'

const SECRET = 'a-production-secret-that-is-long-enough'

function issues(env: Record<string, string>, runtime: 'bun' | 'node' | 'workers' = 'node') {
  const r = parseConfig(env, { runtime })
  if (r.ok) throw new Error('expected the configuration to be refused')
  return r.issues
}

describe('configuration', () => {
  it('runs embedded with nothing set, with documented defaults and a warning about the dev secret', () => {
    const r = parseConfig({}, { runtime: 'bun' })
    expect(r.ok).toBe(true)
    if (!r.ok) return
    const c = r.config
    expect(c.port).toBe(3000)
    expect(c.host).toBe('127.0.0.1')
    expect(c.dataDir).toBe('.data')
    expect(c.database.url).toBeUndefined()
    expect(c.database.poolMax).toBe(10)
    expect(c.redis).toBeUndefined()
    expect(c.qstash).toBeUndefined()
    expect(c.publicUrl).toBe('http://localhost:3000')
    expect(c.jwt).toEqual({
      secret: DEV_JWT_SECRET,
      previousSecret: undefined,
      isDevDefault: true,
      accessTtlSeconds: 900,
      refreshTtlSeconds: 2_592_000,
    })
    expect(c.passwordHash).toBe('argon2id')
    expect(c.trustedProxies).toBe(0)
    expect(c.rateLimitTimeoutMs).toBe(300)
    expect(c.orderTtlSeconds).toBe(900)
    expect(c.schedulerTickSeconds).toBe(60)
    expect(c.rateLimitAuth).toEqual({ limit: 10, windowSeconds: 60 })
    expect(c.corsOrigins).toEqual([])
    expect(c.bodyLimitBytes).toBe(65536)
    expect(c.storeCurrency).toBe('USD')
    expect(r.warnings.join()).toMatch(/JWT_SECRET/)
  })

  it('reads every documented setting', () => {
    const { config } = loadConfig(
      {
        PORT: '8080',
        DATA_DIR: '/var/lib/edgeshop',
        DATABASE_URL: 'postgres://u:p@db:5432/shop',
        DATABASE_POOL_MAX: '25',
        UPSTASH_REDIS_REST_URL: 'https://redis.example',
        UPSTASH_REDIS_REST_TOKEN: 'rt',
        UPSTASH_TIMEOUT_MS: '750',
        QSTASH_URL: 'https://qstash.example',
        QSTASH_TOKEN: 'qt',
        QSTASH_CURRENT_SIGNING_KEY: 'k1',
        QSTASH_NEXT_SIGNING_KEY: 'k2',
        QSTASH_TIMEOUT_MS: '2500',
        QSTASH_MAX_IN_FLIGHT: '32',
        PUBLIC_URL: 'https://api.shop.example/',
        JWT_SECRET: SECRET,
        ADMIN_EMAIL: 'Admin@Shop.Example',
        ADMIN_PASSWORD: 'correct horse battery',
        ORDER_TTL_SECONDS: '600',
        SCHEDULER_TICK_SECONDS: '30',
        RATE_LIMIT_AUTH: '5/120',
        CORS_ORIGINS: 'https://shop.example, https://admin.shop.example',
        METRICS_TOKEN: 'metrics-token-0123456789',
        EMAIL_API_URL: 'https://mail.example/emails',
        EMAIL_API_KEY: 'mk',
        EMAIL_FROM: 'shop@shop.example',
        PAYMENT_PROVIDER: 'simulated',
        NODE_ENV: 'production',
      },
      { runtime: 'node' },
    )
    expect(config.port).toBe(8080)
    expect(config.host).toBe('0.0.0.0')
    expect(config.database).toMatchObject({ url: 'postgres://u:p@db:5432/shop', poolMax: 25 })
    expect(config.redis).toEqual({ url: 'https://redis.example', token: 'rt', timeoutMs: 750 })
    expect(config.qstash).toEqual({
      url: 'https://qstash.example',
      token: 'qt',
      currentSigningKey: 'k1',
      nextSigningKey: 'k2',
      timeoutMs: 2500,
      maxInFlight: 32,
    })
    expect(config.publicUrl).toBe('https://api.shop.example')
    expect(config.admin).toEqual({ email: 'admin@shop.example', password: 'correct horse battery' })
    expect(config.rateLimitAuth).toEqual({ limit: 5, windowSeconds: 120 })
    expect(config.corsOrigins).toEqual(['https://shop.example', 'https://admin.shop.example'])
    expect(config.production).toBe(true)
    expect(config.mailer).toEqual({
      kind: 'http',
      url: 'https://mail.example/emails',
      apiKey: 'mk',
      from: 'shop@shop.example',
      timeoutMs: 5000,
      circuitOpenMs: 30_000,
    })
    expect(config.payments).toEqual({ provider: 'simulated' })
  })

  it('treats empty values as unset', () => {
    const r = parseConfig({ DATABASE_URL: '', PORT: ' ' }, { runtime: 'node' })
    expect(r.ok && r.config.database.url).toBeUndefined()
    expect(r.ok && r.config.port).toBe(3000)
  })

  it('names every bad setting at once', () => {
    const list = issues({
      PORT: '70000',
      DATABASE_POOL_MAX: 'ten',
      DATABASE_URL: 'mysql://x',
      RATE_LIMIT_AUTH: '10 per minute',
      CORS_ORIGINS: 'https://ok.example,not an origin',
      LOG_LEVEL: 'loud',
    })
    expect(list.map((i) => i.setting).sort()).toEqual([
      'CORS_ORIGINS',
      'DATABASE_POOL_MAX',
      'DATABASE_URL',
      'LOG_LEVEL',
      'PORT',
      'RATE_LIMIT_AUTH',
    ])
    const err = new ConfigError(list)
    expect(err.message).toMatch(/PORT: must be at most 65535/)
  })

  it('requires settings that only work together', () => {
    expect(issues({ UPSTASH_REDIS_REST_URL: 'https://r.example' }).map((i) => i.setting)).toEqual(['UPSTASH_REDIS_REST_TOKEN'])
    expect(issues({ ADMIN_PASSWORD: 'long enough password' }).map((i) => i.setting)).toEqual(['ADMIN_EMAIL'])
    expect(
      issues({ QSTASH_TOKEN: 't' })
        .map((i) => i.setting)
        .sort(),
    ).toEqual(['QSTASH_CURRENT_SIGNING_KEY', 'QSTASH_NEXT_SIGNING_KEY'])
  })

  it('takes as ADMIN_EMAIL every address signup takes, and refuses what signup refuses', () => {
    const admin = (email: string) => {
      const r = parseConfig({ ADMIN_EMAIL: email, ADMIN_PASSWORD: 'long enough password' }, { runtime: 'node' })
      return r.ok ? [] : r.issues.map((i) => i.setting)
    }
    expect(admin('o!reilly@example.com')).toEqual([])
    expect(admin('first.last+shop@mail.example.org')).toEqual([])
    for (const bad of ['"quoted"@example.com', 'a@[127.0.0.1]', 'no-at.example.com', 'a@localhost'])
      expect(admin(bad)).toEqual(['ADMIN_EMAIL'])
  })

  it('turns every dev default into an error in production', () => {
    const list = issues({ NODE_ENV: 'production' })
    expect(list.map((i) => i.setting).sort()).toEqual(['DATABASE_URL', 'EMAIL_API_URL', 'JWT_SECRET', 'PAYMENT_PROVIDER'])
    expect(
      issues({
        NODE_ENV: 'production',
        JWT_SECRET: DEV_JWT_SECRET,
        DATA_DIR: '/data',
        MAILER: 'recording',
        PAYMENT_PROVIDER: 'simulated',
      }).map((i) => i.setting),
    ).toEqual(['JWT_SECRET'])
    const withQstash = issues({
      NODE_ENV: 'production',
      MAILER: 'recording',
      PAYMENT_PROVIDER: 'simulated',
      JWT_SECRET: SECRET,
      DATABASE_URL: 'postgres://db/x',
      QSTASH_TOKEN: 't',
      QSTASH_CURRENT_SIGNING_KEY: 'a',
      QSTASH_NEXT_SIGNING_KEY: 'b',
    })
    expect(withQstash.map((i) => i.setting)).toEqual(['PUBLIC_URL'])
  })

  it('accepts the embedded database in production only when DATA_DIR is chosen explicitly', () => {
    expect(
      parseConfig(
        { NODE_ENV: 'production', JWT_SECRET: SECRET, DATA_DIR: '/data', MAILER: 'recording', PAYMENT_PROVIDER: 'simulated' },
        { runtime: 'node' },
      ).ok,
    ).toBe(true)
  })

  it('hashes passwords with PBKDF2 on Workers, where argon2id is not available', () => {
    const base = { JWT_SECRET: SECRET, DATABASE_URL: 'postgres://h/db', MAILER: 'recording', PAYMENT_PROVIDER: 'simulated' }
    const r = parseConfig(base, { runtime: 'workers' })
    expect(r.ok && r.config.passwordHash).toBe('pbkdf2-sha256')
    expect(issues({ ...base, PASSWORD_HASH: 'argon2id' }, 'workers').map((i) => i.setting)).toEqual(['PASSWORD_HASH'])
  })

  it('asks for the whole HTTP mailer, and accepts an explicit recording mailer in production', () => {
    expect(
      issues({ EMAIL_API_URL: 'https://mail.example' })
        .map((i) => i.setting)
        .sort(),
    ).toEqual(['EMAIL_API_KEY', 'EMAIL_FROM'])
    const r = parseConfig(
      { NODE_ENV: 'production', JWT_SECRET: SECRET, DATA_DIR: '/d', MAILER: 'recording', PAYMENT_PROVIDER: 'simulated' },
      { runtime: 'bun' },
    )
    expect(r.ok && r.config.mailer).toEqual({ kind: 'recording' })
  })

  it('shares a port only when asked, and only among processes on one PostgreSQL database', () => {
    const defaults = loadConfig({}, { runtime: 'bun' }).config
    expect(defaults.portSharing).toBe(false)
    expect(defaults.shutdownDrainMs).toBe(5000)
    const shared = loadConfig(
      { PORT_SHARING: 'true', DATABASE_URL: 'postgres://u:p@db:5432/shop', SHUTDOWN_DRAIN_MS: '0' },
      { runtime: 'node' },
    ).config
    expect(shared.portSharing).toBe(true)
    expect(shared.shutdownDrainMs).toBe(0)
    expect(issues({ PORT_SHARING: 'true' })).toEqual([{ setting: 'PORT_SHARING', message: expect.stringMatching(/needs DATABASE_URL/) }])
    expect(issues({ PORT_SHARING: 'yes', SHUTDOWN_DRAIN_MS: '-1' }).map((i) => i.setting)).toEqual(['PORT_SHARING', 'SHUTDOWN_DRAIN_MS'])
  })

  it('takes a role for Bun and Node on a shared database only', () => {
    expect(loadConfig({}, { runtime: 'bun' }).config.role).toBe('all')
    expect(loadConfig({ ROLE: 'worker', DATABASE_URL: 'postgres://u:p@db:5432/shop' }, { runtime: 'node' }).config.role).toBe('worker')
    expect(issues({ ROLE: 'api' })).toEqual([{ setting: 'ROLE', message: expect.stringMatching(/needs DATABASE_URL/) }])
    expect(issues({ ROLE: 'scheduler' }).map((i) => i.setting)).toEqual(['ROLE'])
  })

  it('refuses a previous signing secret equal to the current one', () => {
    expect(issues({ JWT_SECRET: SECRET, JWT_PREVIOUS_SECRET: SECRET }).map((i) => i.setting)).toEqual(['JWT_PREVIOUS_SECRET'])
  })

  it('traces on Bun and Node only with an endpoint, with OpenTelemetry’s sampler names, and warns on Workers', () => {
    const off = parseConfig({}, { runtime: 'bun' })
    expect(off.ok && off.config.tracing).toBeUndefined()
    const on = parseConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }, { runtime: 'node' })
    expect(on.ok && on.config.tracing).toEqual({
      endpoint: 'http://collector:4318',
      serviceName: 'edgeshop',
      sampler: 'parentbased_always_on',
      ratio: 1,
    })
    const sampled = parseConfig(
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' },
      { runtime: 'bun' },
    )
    expect(sampled.ok && sampled.config.tracing).toMatchObject({ sampler: 'parentbased_traceidratio', ratio: 0.25 })
    expect(
      issues({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318', OTEL_TRACES_SAMPLER: 'sometimes', OTEL_TRACES_SAMPLER_ARG: '1.5' })
        .map((i) => i.setting)
        .sort(),
    ).toEqual(['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_TRACES_SAMPLER', 'OTEL_TRACES_SAMPLER_ARG'])
    const worker = parseConfig(
      {
        JWT_SECRET: SECRET,
        DATABASE_URL: 'postgres://h/db',
        MAILER: 'recording',
        PAYMENT_PROVIDER: 'simulated',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
      },
      { runtime: 'workers' },
    )
    expect(worker.ok && worker.config.tracing).toEqual({
      endpoint: 'http://c:4318',
      serviceName: 'edgeshop',
      sampler: 'parentbased_always_on',
      ratio: 1,
    })
  })

  it('applies production rules on Workers and requires a database there', () => {
    expect(
      issues({}, 'workers')
        .map((i) => i.setting)
        .sort(),
    ).toEqual(['DATABASE_URL', 'EMAIL_API_URL', 'JWT_SECRET', 'PAYMENT_PROVIDER'])
    expect(issues({ NODE_ENV: 'development' }, 'workers').map((i) => i.setting)).toEqual(['DATABASE_URL'])
    expect(
      parseConfig(
        { JWT_SECRET: SECRET, DATABASE_URL: 'postgres://h/db', MAILER: 'recording', PAYMENT_PROVIDER: 'simulated' },
        { runtime: 'workers' },
      ).ok,
    ).toBe(true)
  })

  it('never repeats a setting value in its message', () => {
    const list = issues({ JWT_SECRET: 'short-secret-value', METRICS_TOKEN: 'tiny-token', DATABASE_URL: 'postgres://user:hunter2@' })
    const text = JSON.stringify(list)
    expect(text).not.toContain('short-secret-value')
    expect(text).not.toContain('tiny-token')
    expect(text).not.toContain('hunter2')
  })
})

describe('read replicas', () => {
  const issues = (env: Record<string, string>, runtime: 'node' | 'workers' = 'node') => {
    const r = parseConfig(env, { runtime })
    return r.ok ? [] : r.issues
  }
  const primary = 'postgres://u:p@db:5432/shop'

  it('reads the replicas, the lag bound and the poll interval, with their defaults', () => {
    const { config } = loadConfig(
      { DATABASE_URL: primary, DATABASE_REPLICA_URLS: ' postgres://u:p@r1:5432/shop , postgres://u:p@r2:5432/shop,' },
      { runtime: 'node' },
    )
    expect(config.database).toMatchObject({
      replicaUrls: ['postgres://u:p@r1:5432/shop', 'postgres://u:p@r2:5432/shop'],
      replicaMaxLagMs: 2000,
      replicaPollMs: 250,
    })
    expect(loadConfig({ DATABASE_URL: primary }, { runtime: 'node' }).config.database.replicaUrls).toEqual([])
  })

  it('refuses replicas without a primary, on Workers, a bad URL, a poll slower than the bound, and a bound that breaks the 5 s', () => {
    expect(issues({ DATABASE_REPLICA_URLS: 'postgres://u:p@r1/shop' })).toEqual([
      { setting: 'DATABASE_REPLICA_URLS', message: expect.stringMatching(/needs DATABASE_URL/) },
    ])
    expect(issues({ DATABASE_URL: primary, DATABASE_REPLICA_URLS: 'postgres://u:p@r1/shop', NODE_ENV: 'development' }, 'workers')).toEqual([
      { setting: 'DATABASE_REPLICA_URLS', message: expect.stringMatching(/is for Bun and Node/) },
    ])
    expect(issues({ DATABASE_URL: primary, DATABASE_REPLICA_URLS: 'postgres://u:p@r1/shop,mysql://r2' }).map((i) => i.setting)).toEqual([
      'DATABASE_REPLICA_URLS',
    ])
    expect(issues({ DATABASE_URL: primary, REPLICA_MAX_LAG_MS: '500', REPLICA_POLL_MS: '500' }).map((i) => i.setting)).toEqual([
      'REPLICA_POLL_MS',
    ])
    expect(
      issues({
        DATABASE_URL: primary,
        DATABASE_REPLICA_URLS: 'postgres://u:p@r1/shop',
        REPLICA_MAX_LAG_MS: '3000',
        CACHE_L1_TTL_MS: '2500',
      }),
    ).toEqual([{ setting: 'REPLICA_MAX_LAG_MS', message: expect.stringMatching(/at most 5000/) }])
  })

  it('never repeats a replica URL (it carries a password) in a message', () => {
    const list = issues({ DATABASE_URL: primary, DATABASE_REPLICA_URLS: 'postgres://u:hunter2@r1/shop,nope' })
    expect(JSON.stringify(list)).not.toContain('hunter2')
  })
})
