import * as nodeCrypto from 'node:crypto'
import { createPasswordHasher, type PasswordAlgorithm, pbkdf2Sha256, WORKERS_PBKDF2_MAX_ITERATIONS } from '../features/accounts/index.ts'

type Argon2 = (
  algorithm: 'argon2id',
  params: { message: string; nonce: Uint8Array; parallelism: number; tagLength: number; memory: number; passes: number },
  callback: (err: Error | null, key: Uint8Array) => void,
) => void

/**
 * argon2id from `node:crypto` (Node 24.7+, Bun 1.3+), computed off the main
 * thread. Not available on Workers: only Bun and Node entry files use it.
 */
export function argon2id(params = { m: 19_456, t: 2, p: 1 }): PasswordAlgorithm {
  const argon2 = (nodeCrypto as unknown as { argon2?: Argon2 }).argon2
  if (typeof argon2 !== 'function') throw new Error('node:crypto argon2 is missing: Node >= 24.7 or Bun >= 1.3 is required')
  return {
    id: 'argon2id',
    params,
    derive: (password, salt, p) =>
      new Promise((resolve, reject) =>
        argon2('argon2id', { message: password, nonce: salt, parallelism: p.p!, tagLength: 32, memory: p.m!, passes: p.t! }, (err, key) =>
          err ? reject(err) : resolve(new Uint8Array(key)),
        ),
      ),
  }
}

/**
 * The password hasher of a Bun or Node process: argon2id for new hashes
 * (or PBKDF2 at the Workers-compatible count when PASSWORD_HASH=pbkdf2-sha256
 * keeps a fleet that shares its database with Workers portable), and both
 * algorithms for checking what is stored.
 */
export function processPasswordHasher(preference: 'argon2id' | 'pbkdf2-sha256') {
  const argon = argon2id()
  const pbkdf2 = pbkdf2Sha256({ iterations: WORKERS_PBKDF2_MAX_ITERATIONS })
  return createPasswordHasher(preference === 'argon2id' ? { preferred: argon, others: [pbkdf2] } : { preferred: pbkdf2, others: [argon] })
}
