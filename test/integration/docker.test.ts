import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { ROOT } from '../support/app-server.ts'
import { buildDockerfile, inStage, type Stage } from '../support/dockerfile.ts'
import { freePort } from '../support/free-port.ts'
import { groupListensOn } from '../support/listener.ts'

/*
 * No Docker engine runs here, so this performs the Dockerfile's build and
 * start steps in a clean temporary directory (see test/support/dockerfile.ts
 * for what that does and does not prove), then runs the image's migration
 * and CMD as a non-root user, probes /readyz and runs the HEALTHCHECK.
 */

const IMAGE_USER = 'nobody'

/** The build context: the repository's files as a clone has them, minus .dockerignore. */
function buildContext(dest: string) {
  const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean)
  const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((p) => new RegExp(`^${p.replace(/\./g, '\\.').replace(/\*/g, '[^/]*')}(/|$)`))
  for (const file of files) {
    if (ignored.some((re) => re.test(file)) || !existsSync(join(ROOT, file))) continue
    mkdirSync(dirname(join(dest, file)), { recursive: true })
    cpSync(join(ROOT, file), join(dest, file))
  }
}

function which(cmd: string): string {
  const found = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim()
  if (!found) throw new Error(`${cmd} not found on PATH`)
  return found
}

/** A directory holding just one program: the stand-in for an image that ships it. */
function toolDir(root: string, name: string, target: string): string {
  const dir = join(root, `image-${name}`)
  mkdirSync(dir, { recursive: true })
  symlinkSync(target, join(dir, name))
  return dir
}

function runAsImage(stage: Stage, argv: string[], env: Record<string, string>): ChildProcess {
  const setpriv = ['--reuid', IMAGE_USER, '--regid', 'nogroup', '--clear-groups', '--']
  return spawn('setpriv', [...setpriv, ...argv], {
    cwd: inStage(stage, stage.workdir),
    env: { ...stage.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
}

function finished(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  child.stderr!.on('data', (d) => (out += d))
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, out })
    })
  })
}

async function waitFor(url: string, child: ChildProcess, output: () => string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the image's CMD exited with ${child.exitCode}:\n${output()}`)
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
      if (res.status === 200) {
        if (groupListensOn(child.pid!, Number(new URL(url).port)) === false) throw new Error(`another process answers on ${url}`)
        return res
      }
    } catch {}
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`${url} did not answer 200 within ${timeoutMs} ms:\n${output()}`)
}

describe('Dockerfile', () => {
  let work: string
  let image: Stage
  let databaseUrl: string

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'edgeshop-docker-'))
    const context = join(work, 'context')
    buildContext(context)
    const stages = buildDockerfile(join(ROOT, 'Dockerfile'), {
      context,
      workDir: join(work, 'stages'),
      images: {
        'oven/bun:': toolDir(work, 'bun', which(process.env.BUN_BIN ?? 'bun')),
        'node:': toolDir(work, 'node', process.execPath),
      },
      users: { node: IMAGE_USER },
    })
    image = stages.at(-1)!

    const admin = postgres(inject('postgresAdminUrl'), { max: 1, onnotice: () => {} })
    await admin.unsafe('create database docker_image')
    await admin.end()
    databaseUrl = inject('postgresAdminUrl').replace(/\/postgres$/, '/docker_image')
  }, 300_000)

  afterAll(() => rmSync(work, { recursive: true, force: true }))

  /** Runs the image's CMD as its user and waits for /readyz to answer 200. */
  async function startImage(settings: Record<string, string>) {
    const port = await freePort()
    const env = {
      PORT: String(port),
      HOST: '127.0.0.1',
      JWT_SECRET: 'docker-image-secret-0123456789abcdef',
      PAYMENT_PROVIDER: 'simulated',
      MAILER: 'recording',
      ...settings,
    }
    const server = runAsImage(image, image.cmd!, env)
    let out = ''
    server.stdout!.on('data', (d) => (out += d))
    server.stderr!.on('data', (d) => (out += d))
    const exited = new Promise<number | null>((r) => server.on('exit', (code) => r(code)))
    const output = () => out
    try {
      const ready = await waitFor(`http://127.0.0.1:${port}/readyz`, server, output)
      return { server, env, output, exited, ready }
    } catch (err) {
      server.kill('SIGKILL')
      throw err
    }
  }

  it('is multi-stage and ships only production dependencies, the bundle, the sources and the migrations', () => {
    expect(image.name).toBe('runtime')
    const app = inStage(image, '/app')
    expect(readdirSync(app).sort()).toEqual(['dist', 'drizzle', 'node_modules', 'package.json', 'scripts', 'src'])
    const modules = readdirSync(join(app, 'node_modules'))
    for (const dev of ['vitest', 'wrangler', 'drizzle-kit', 'typescript', '@biomejs', 'vite']) expect(modules).not.toContain(dev)
    for (const prod of ['hono', 'drizzle-orm', 'postgres', 'zod', '@electric-sql']) expect(modules).toContain(prod)
    expect(image.user).toBe('node')
    expect(image.env.NODE_ENV).toBe('production')
    expect(image.healthcheck).toBeDefined()
    expect(image.exposed).toContain('3000')
  })

  it('migrates, starts as a non-root user, answers /readyz, passes its HEALTHCHECK and stops on SIGTERM', async () => {
    const migrate = await finished(runAsImage(image, ['node', 'scripts/migrate.ts'], { DATABASE_URL: databaseUrl }), 60_000)
    expect(migrate.code, migrate.out).toBe(0)

    const { server, env, output, exited, ready } = await startImage({ DATABASE_URL: databaseUrl })
    try {
      expect(await ready.json()).toMatchObject({ status: 'ready', checks: { db: 'ok' } })

      const uid = readFileSync(`/proc/${server.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1]
      expect(uid).not.toBe('0')

      const health = await finished(runAsImage(image, image.healthcheck!, env), 10_000)
      expect(health.code, health.out).toBe(0)
    } finally {
      server.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
    expect(output()).toContain('stopped cleanly')
  })

  it('runs embedded in production when DATA_DIR is chosen, writing to the volume as the image user', async () => {
    const { server, exited } = await startImage({ DATA_DIR: inStage(image, '/data') })
    try {
      const pgVersion = join(inStage(image, '/data'), 'pglite', 'PG_VERSION')
      expect(existsSync(pgVersion)).toBe(true)
      expect(statSync(pgVersion).uid).not.toBe(0)
    } finally {
      server.kill('SIGTERM')
    }
    expect(await exited).toBe(0)
    // PGlite's first start (initdb and migrations in WASM) alone took 7 s on a quiet 2-core VM and over 30 s in the full suite.
  }, 120_000)
})
