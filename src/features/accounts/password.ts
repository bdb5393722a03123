import { Buffer } from 'node:buffer'
import { utf8 } from '../../lib/bytes.ts'
import { bytesEqual } from '../../lib/compare.ts'

/*
 * Password hashes are PHC strings that carry their algorithm and parameters:
 *
 *   $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>     Bun and Node (node:crypto argon2)
 *   $pbkdf2-sha256$i=100000,l=32$<salt>$<hash>       Workers (WebCrypto), or PASSWORD_HASH=pbkdf2-sha256
 *
 * Parameters, and why (OWASP Password Storage Cheat Sheet):
 * - argon2id m=19 MiB, t=2, p=1 is OWASP's first recommended setting. Larger
 *   memory would be stronger but every concurrent hash holds it; at most
 *   MAX_CONCURRENT hashes run at once, so hashing adds at most ~40 MiB to the
 *   process under a login flood.
 * - PBKDF2-HMAC-SHA256 with 100,000 iterations is the most production
 *   Workers allow (they refuse more); OWASP asks 600,000, so Workers hashes
 *   are the weaker kind and are upgraded to argon2id when such a user logs in
 *   on Bun or Node (unless PASSWORD_HASH=pbkdf2-sha256 keeps one fleet portable).
 */

/** One key-derivation function. */
export interface PasswordAlgorithm {
  readonly id: 'argon2id' | 'pbkdf2-sha256'
  /** Parameters for new hashes. */
  readonly params: Readonly<Record<string, number>>
  derive(password: string, salt: Uint8Array<ArrayBuffer>, params: Record<string, number>): Promise<Uint8Array>
  /** A reason this runtime cannot compute these parameters, if it cannot. */
  refuse?(params: Record<string, number>): string | undefined
}

/** The most PBKDF2 iterations production Workers compute. */
export const WORKERS_PBKDF2_MAX_ITERATIONS = 100_000
const SALT_BYTES = 16
const HASH_BYTES = 32
const MAX_CONCURRENT = 2

/** PBKDF2-HMAC-SHA256 through WebCrypto: available on every runtime. */
export function pbkdf2Sha256(opts: { iterations: number; maxIterations?: number }): PasswordAlgorithm {
  return {
    id: 'pbkdf2-sha256',
    params: { i: opts.iterations, l: HASH_BYTES },
    async derive(password, salt, params) {
      const key = await crypto.subtle.importKey('raw', utf8(password), 'PBKDF2', false, ['deriveBits'])
      const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations: params.i! }, key, params.l! * 8)
      return new Uint8Array(bits)
    },
    refuse: (params) =>
      opts.maxIterations !== undefined && params.i! > opts.maxIterations
        ? `PBKDF2 with ${params.i} iterations exceeds this runtime's limit of ${opts.maxIterations}`
        : undefined,
  }
}

/** The hasher Workers use: PBKDF2 at the most iterations production Workers allow. */
export const workersPasswordAlgorithm = () =>
  pbkdf2Sha256({ iterations: WORKERS_PBKDF2_MAX_ITERATIONS, maxIterations: WORKERS_PBKDF2_MAX_ITERATIONS })

/** A stored hash this runtime cannot check (for example argon2id on Workers). Rendered as a 500 and logged: a configuration problem. */
export class UnsupportedHashError extends Error {
  constructor(reason: string) {
    super(reason)
    this.name = 'UnsupportedHashError'
  }
}

interface Parsed {
  id: string
  params: Record<string, number>
  salt: Uint8Array<ArrayBuffer>
  hash: Uint8Array
}

/** PHC's base64: the standard alphabet without padding. */
const B64 = /^[A-Za-z0-9+/]+$/
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64').replace(/=+$/, '')

export function parsePhc(phc: string): Parsed {
  const parts = phc.split('$')
  // ['', id, (v=19)?, params, salt, hash]
  if (parts[0] !== '' || parts.length < 5) throw new Error('not a PHC string')
  const id = parts[1]!
  const rest = parts.slice(2)
  if (rest[0]?.startsWith('v=')) rest.shift()
  const [paramText, salt, hash] = rest as [string, string, string]
  const params: Record<string, number> = {}
  for (const kv of paramText.split(',')) {
    const [k, v] = kv.split('=')
    if (!k || v === undefined || !/^\d+$/.test(v)) throw new Error('bad PHC parameters')
    params[k] = Number(v)
  }
  if (!B64.test(salt) || !B64.test(hash)) throw new Error('bad PHC salt or hash')
  return { id, params, salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') }
}

function formatPhc(id: string, params: Record<string, number>, salt: Uint8Array, hash: Uint8Array): string {
  const version = id === 'argon2id' ? '$v=19' : ''
  const p = Object.entries(params)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  return `$${id}${version}$${p}$${b64(salt)}$${b64(hash)}`
}

/** Hashes and checks passwords; see the file comment for the algorithms. */
export interface PasswordHasher {
  readonly algorithm: PasswordAlgorithm['id']
  hash(password: string): Promise<string>
  /** `needsRehash` when the stored hash is weaker than, or different from, what `hash` makes now. */
  verify(password: string, phc: string): Promise<{ ok: boolean; needsRehash: boolean }>
  /** Costs what `verify` costs, for an email that has no account: the answer must not tell them apart by time. */
  verifyNothing(password: string): Promise<void>
}

/**
 * @example
 * ```ts
 * const passwords = createPasswordHasher({ preferred: argon2id(), others: [pbkdf2Sha256({ iterations: 100_000 })] })
 * const phc = await passwords.hash('correct horse battery staple')
 * ```
 */
export function createPasswordHasher(opts: { preferred: PasswordAlgorithm; others?: PasswordAlgorithm[] }): PasswordHasher {
  const { preferred } = opts
  const byId = new Map<string, PasswordAlgorithm>([[preferred.id, preferred]])
  for (const a of opts.others ?? []) if (!byId.has(a.id)) byId.set(a.id, a)

  let running = 0
  const waiting: (() => void)[] = []
  const limited = async <T>(work: () => Promise<T>): Promise<T> => {
    if (running >= MAX_CONCURRENT) await new Promise<void>((r) => waiting.push(r))
    running++
    try {
      return await work()
    } finally {
      running--
      waiting.shift()?.()
    }
  }
  const normalize = (pw: string) => pw.normalize('NFKC')

  const hash = async (password: string) => {
    const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES))
    const params = { ...preferred.params }
    const derived = await limited(() => preferred.derive(normalize(password), salt, params))
    return formatPhc(preferred.id, params, salt, derived)
  }

  const verify = async (password: string, phc: string) => {
    let parsed: Parsed
    try {
      parsed = parsePhc(phc)
    } catch {
      throw new UnsupportedHashError('the stored password hash is not a PHC string')
    }
    const algorithm = byId.get(parsed.id)
    if (!algorithm) throw new UnsupportedHashError(`${parsed.id} hashes cannot be checked on this runtime`)
    const refusal = algorithm.refuse?.(parsed.params)
    if (refusal) throw new UnsupportedHashError(refusal)
    const derived = await limited(() => algorithm.derive(normalize(password), parsed.salt, parsed.params))
    const ok = bytesEqual(derived, parsed.hash)
    const weaker = algorithm.id !== preferred.id || Object.entries(preferred.params).some(([k, v]) => (parsed.params[k] ?? 0) < v)
    return { ok, needsRehash: ok && (weaker || parsed.salt.length < SALT_BYTES) }
  }

  let decoy: Promise<string> | undefined
  return {
    algorithm: preferred.id,
    hash,
    verify,
    async verifyNothing(password) {
      decoy ??= hash('edgeshop decoy password for unknown accounts')
      await verify(password, await decoy)
    },
  }
}
