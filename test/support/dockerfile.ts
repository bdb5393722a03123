import { spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'

/*
 * Performs a Dockerfile's build steps without a Docker engine (none runs on
 * this machine): each stage gets a directory standing for its filesystem,
 * FROM gives it the local toolchain instead of the base image, and WORKDIR,
 * ENV, COPY (also --from another stage) and RUN are carried out as written.
 * Absolute image paths in RUN (/app, /data) are mapped into the stage
 * directory; the image's users map to a local unprivileged user.
 *
 * What this proves: the instructions, in order, produce a tree whose CMD
 * starts and serves, with only what the Dockerfile copies and installs, as a
 * non-root user. What it cannot prove: the base images' own contents, layer
 * caching, and the engine's isolation.
 */

export interface Stage {
  name: string
  image: string
  root: string
  workdir: string
  env: Record<string, string>
  user: string | undefined
  cmd: string[] | undefined
  healthcheck: string[] | undefined
  exposed: string[]
  volumes: string[]
}

export interface BuildOptions {
  /** The build context (already filtered by .dockerignore). */
  context: string
  /** An empty directory to build the stages in. */
  workDir: string
  /** Image name prefix → directory whose programs stand for that image's (e.g. `node:` → a dir holding `node`). */
  images: Record<string, string>
  /** Image user → local user, for `USER` and `chown` (e.g. node → nobody). */
  users: Record<string, string>
  log?: (line: string) => void
}

const SYSTEM = /^(usr|bin|sbin|etc|dev|proc|sys|lib|lib64|var|opt|root|home|tmp|run)$/

/** Logical lines: continuations joined, comments and blank lines dropped. */
export function parseDockerfile(text: string): { instruction: string; args: string }[] {
  const out: { instruction: string; args: string }[] = []
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd()
    if (current === '' && /^\s*(#|$)/.test(line)) continue
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `
      continue
    }
    current += line
    const m = current.trim().match(/^(\w+)\s+([\s\S]*)$/)
    if (m) out.push({ instruction: m[1]!.toUpperCase(), args: m[2]!.trim() })
    current = ''
  }
  return out
}

function substitute(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)/g, (_, a, def, b) => vars[a ?? b] ?? def ?? '')
}

function execForm(args: string): string[] {
  const parsed = JSON.parse(args) as unknown
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`expected exec form: ${args}`)
  return parsed
}

function parseEnv(args: string): Record<string, string> {
  const env: Record<string, string> = {}
  const re = /(\w+)=("([^"]*)"|'([^']*)'|(\S*))/g
  if (!args.includes('=')) {
    const [k, ...v] = args.split(/\s+/)
    env[k!] = v.join(' ')
    return env
  }
  for (let m = re.exec(args); m; m = re.exec(args)) env[m[1]!] = m[3] ?? m[4] ?? m[5] ?? ''
  return env
}

/** Maps an absolute image path into a stage's directory. */
export function inStage(stage: Stage, path: string): string {
  const abs = path.startsWith('/') ? path : resolve(stage.workdir, path)
  return join(stage.root, abs)
}

function copyInto(src: string, dest: string) {
  if (statSync(src).isDirectory()) cpSync(src, dest, { recursive: true })
  else {
    mkdirSync(dirname(dest), { recursive: true })
    cpSync(src, dest)
  }
}

/** Carries out every stage; returns them in order (the last is the image). */
export function buildDockerfile(file: string, opts: BuildOptions): Stage[] {
  const log = opts.log ?? (() => {})
  const stages: Stage[] = []
  const args: Record<string, string> = {}
  let stage: Stage | undefined

  for (const { instruction, args: raw } of parseDockerfile(readFileSync(file, 'utf8'))) {
    if (instruction === 'ARG') {
      const [k, v] = raw.split('=')
      args[k!.trim()] ??= v?.trim() ?? ''
      continue
    }
    if (instruction === 'FROM') {
      const m = substitute(raw, args).match(/^(\S+)(?:\s+AS\s+(\S+))?$/i)
      if (!m) throw new Error(`bad FROM: ${raw}`)
      const image = m[1]!
      const name = m[2] ?? String(stages.length)
      const root = join(opts.workDir, name)
      mkdirSync(root, { recursive: true })
      const toolDir = Object.entries(opts.images).find(([prefix]) => image.startsWith(prefix))?.[1]
      if (!toolDir) throw new Error(`no local stand-in for base image ${image}`)
      stage = {
        name,
        image,
        root,
        workdir: '/',
        env: { PATH: `${toolDir}:/usr/local/bin:/usr/bin:/bin`, HOME: '/tmp' },
        user: undefined,
        cmd: undefined,
        healthcheck: undefined,
        exposed: [],
        volumes: [],
      }
      stages.push(stage)
      log(`FROM ${image} AS ${name}`)
      continue
    }
    if (!stage) throw new Error(`${instruction} before FROM`)
    const value = substitute(raw, { ...args, ...stage.env })
    log(`${instruction} ${value}`)
    switch (instruction) {
      case 'ENV':
        Object.assign(stage.env, parseEnv(value))
        break
      case 'WORKDIR':
        stage.workdir = resolve(stage.workdir, value)
        mkdirSync(inStage(stage, stage.workdir), { recursive: true })
        break
      case 'COPY': {
        const parts = value.split(/\s+/)
        let from: Stage | undefined
        const paths: string[] = []
        for (const p of parts) {
          if (p.startsWith('--from=')) {
            from = stages.find((s) => s.name === p.slice(7))
            if (!from) throw new Error(`COPY --from unknown stage ${p}`)
          } else if (!p.startsWith('--')) paths.push(p)
        }
        const dest = paths.pop()!
        for (const src of paths) {
          const source = from ? inStage(from, src) : join(opts.context, src)
          if (!existsSync(source)) throw new Error(`COPY: ${src} is not in the ${from ? `stage ${from.name}` : 'build context'}`)
          const multi = paths.length > 1 || dest.endsWith('/')
          const target = inStage(stage, dest)
          const isDir = statSync(source).isDirectory()
          copyInto(source, multi && !isDir ? join(target, src.split('/').pop()!) : target)
        }
        break
      }
      case 'RUN': {
        const mapped = value
          .replace(/(^|[\s=:'"])\/([A-Za-z0-9_.-]+)/g, (whole, pre, first) =>
            SYSTEM.test(first) ? whole : `${pre}${join(stage!.root, first)}`,
          )
          .replace(/\bchown\s+(-R\s+)?(\w+)(?::(\w+))?/g, (_, r, u, g) => {
            const user = opts.users[u] ?? u
            const group = g ? (opts.users[g] ? spawnSync('id', ['-gn', user], { encoding: 'utf8' }).stdout.trim() : g) : undefined
            return `chown ${r ?? ''}${user}${group ? `:${group}` : ''}`
          })
        const res = spawnSync('sh', ['-c', mapped], {
          cwd: inStage(stage, stage.workdir),
          env: stage.env,
          encoding: 'utf8',
          timeout: 300_000,
        })
        if (res.status !== 0) throw new Error(`RUN failed (${res.status}): ${mapped}\n${res.stdout}\n${res.stderr}`)
        break
      }
      case 'USER':
        stage.user = value
        break
      case 'CMD':
        stage.cmd = execForm(value)
        break
      case 'HEALTHCHECK': {
        const m = value.match(/CMD\s+(\[.*\])$/)
        if (!m) throw new Error(`HEALTHCHECK must use the exec form: ${value}`)
        stage.healthcheck = execForm(m[1]!)
        break
      }
      case 'EXPOSE':
        stage.exposed.push(...value.split(/\s+/))
        break
      case 'VOLUME':
        stage.volumes.push(...(value.startsWith('[') ? execForm(value) : value.split(/\s+/)))
        break
      case 'STOPSIGNAL':
      case 'LABEL':
        break
      default:
        throw new Error(`instruction not supported here: ${instruction}`)
    }
  }
  // The unprivileged user must be able to reach the tree.
  for (let dir = opts.workDir; dir !== '/'; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o005) !== 0o005) chmodSync(dir, statSync(dir).mode | 0o055)
  }
  return stages
}
