import { describe, expect, it } from 'vitest'
import {
  createPasswordHasher,
  parsePhc,
  pbkdf2Sha256,
  UnsupportedHashError,
  WORKERS_PBKDF2_MAX_ITERATIONS,
  workersPasswordAlgorithm,
} from '../../src/features/accounts/password.ts'
import { argon2id, processPasswordHasher } from '../../src/runtime/argon2.ts'

describe('password hashing', () => {
  it('Bun and Node hash with argon2id at m=19 MiB, t=2, p=1 into a PHC string', async () => {
    const hasher = processPasswordHasher('argon2id')
    const phc = await hasher.hash('correct horse battery staple')
    expect(phc).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    expect(await hasher.verify('correct horse battery staple', phc)).toEqual({ ok: true, needsRehash: false })
    expect(await hasher.verify('correct horse battery stapler', phc)).toEqual({ ok: false, needsRehash: false })
  })

  it('salts every hash', async () => {
    const hasher = processPasswordHasher('argon2id')
    expect(await hasher.hash('same password here')).not.toBe(await hasher.hash('same password here'))
  })

  it('the Workers path never exceeds the 100,000 PBKDF2 iterations production Workers allow', async () => {
    // This is the hasher src/runtime/worker.ts builds. Local workerd computes any count; production refuses more than 100,000.
    const algorithm = workersPasswordAlgorithm()
    expect(algorithm.id).toBe('pbkdf2-sha256')
    expect(algorithm.params.i).toBeLessThanOrEqual(WORKERS_PBKDF2_MAX_ITERATIONS)
    expect(WORKERS_PBKDF2_MAX_ITERATIONS).toBeLessThanOrEqual(100_000)
    const workers = createPasswordHasher({ preferred: algorithm })
    const phc = await workers.hash('a password for workers')
    expect(parsePhc(phc).params.i).toBeLessThanOrEqual(100_000)
    // A stored hash the Workers runtime could not compute is refused up front, not sent to WebCrypto.
    const tooStrong = await createPasswordHasher({ preferred: pbkdf2Sha256({ iterations: 100_001 }) }).hash('a password for workers')
    await expect(workers.verify('a password for workers', tooStrong)).rejects.toBeInstanceOf(UnsupportedHashError)
  })

  it('Workers cannot check argon2id hashes and say so', async () => {
    const phc = await processPasswordHasher('argon2id').hash('made on node')
    const workers = createPasswordHasher({ preferred: workersPasswordAlgorithm() })
    await expect(workers.verify('made on node', phc)).rejects.toThrow(/argon2id hashes cannot be checked/)
  })

  it('marks hashes with outdated parameters or another algorithm for an upgrade, on a correct password only', async () => {
    const process = processPasswordHasher('argon2id')
    const fromWorkers = await createPasswordHasher({ preferred: workersPasswordAlgorithm() }).hash('moving to node')
    expect(await process.verify('moving to node', fromWorkers)).toEqual({ ok: true, needsRehash: true })
    expect(await process.verify('wrong password', fromWorkers)).toEqual({ ok: false, needsRehash: false })
    const weakArgon = await createPasswordHasher({ preferred: argon2id({ m: 8192, t: 1, p: 1 }) }).hash('old params')
    expect(await process.verify('old params', weakArgon)).toEqual({ ok: true, needsRehash: true })
    const weakPbkdf2 = await createPasswordHasher({ preferred: pbkdf2Sha256({ iterations: 10_000 }) }).hash('few iterations')
    const portable = processPasswordHasher('pbkdf2-sha256')
    expect(await portable.verify('few iterations', weakPbkdf2)).toEqual({ ok: true, needsRehash: true })
  })

  it('PASSWORD_HASH=pbkdf2-sha256 makes hashes every runtime, Workers included, can check', async () => {
    const phc = await processPasswordHasher('pbkdf2-sha256').hash('portable fleet')
    expect(phc.startsWith('$pbkdf2-sha256$i=100000,l=32$')).toBe(true)
    const workers = createPasswordHasher({ preferred: workersPasswordAlgorithm() })
    expect(await workers.verify('portable fleet', phc)).toEqual({ ok: true, needsRehash: false })
  })

  it('normalises Unicode (NFKC), so the same password typed two ways matches', async () => {
    const hasher = processPasswordHasher('argon2id')
    const phc = await hasher.hash('caf\u00e9 au lait!')
    expect((await hasher.verify('cafe\u0301 au lait!', phc)).ok).toBe(true)
  })

  it('refuses a stored value that is not a PHC string', async () => {
    await expect(processPasswordHasher('argon2id').verify('x', 'plaintext-password')).rejects.toBeInstanceOf(UnsupportedHashError)
  })

  it('verifyNothing costs about what verify costs', async () => {
    const hasher = processPasswordHasher('argon2id')
    const phc = await hasher.hash('timing check pw')
    await hasher.verifyNothing('warm up')
    const verify: number[] = []
    const nothing: number[] = []
    // Interleaved, so that load on the machine hits both kinds of call alike; compared by their fastest run, the one
    // least touched by other work (a median still moved by 2× under a loaded CI machine).
    for (let i = 0; i < 7; i++) {
      let t = performance.now()
      await hasher.verify('wrong guess', phc)
      verify.push(performance.now() - t)
      t = performance.now()
      await hasher.verifyNothing('wrong guess')
      nothing.push(performance.now() - t)
    }
    const fastest = (xs: number[]) => Math.min(...xs)
    expect(fastest(nothing)).toBeGreaterThan(fastest(verify) * 0.5)
    expect(fastest(nothing)).toBeLessThan(fastest(verify) * 2)
  })
})
