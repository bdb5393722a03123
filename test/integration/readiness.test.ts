import { spawnSync } from 'node:child_process'
import { chownSync, closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { client } from '../contract/helpers.ts'
import { type AppServer, startAppServer } from '../support/app-server.ts'
import { applyMigrations } from '../support/services.ts'

/*
 * Readiness when the database answers reads but refuses writes. The disk
 * really fills: a size-limited tmpfs holds the database (PostgreSQL: its
 * tablespace; PGlite: DATA_DIR), and a filler file takes the rest of it, as
 * a growing log or backup would. Mounting needs root, as CI runs; elsewhere
 * these tests are skipped and say so.
 */

const asRoot = process.getuid?.() === 0
const SECRET = 'readiness-test-secret-0123456789abcdef'
const ADMIN = { email: 'ready-admin@example.test', password: 'ready admin password' }

interface Tmpfs {
  dir: string
  /** Writes a file until the file system has no room left. */
  fill(): void
  /** Removes that file. */
  free(): void
  unmount(): void
}

function mountTmpfs(sizeMb: number, owner?: string): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), 'edgeshop-tmpfs-'))
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m`, 'tmpfs', dir], { encoding: 'utf8' })
  if (mount.status !== 0) throw new Error(`mount -t tmpfs failed: ${mount.stderr}`)
  if (owner) {
    const id = (flag: string) => Number(spawnSync('id', [flag, owner], { encoding: 'utf8' }).stdout.trim())
    chownSync(dir, id('-u'), id('-g'))
  }
  const filler = join(dir, 'filler')
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'w')
      try {
        // Big chunks first, then ever smaller ones, until not one byte more fits.
        for (let size = 1 << 20; size >= 1; ) {
          try {
            writeSync(fd, Buffer.alloc(size))
          } catch (err) {
            if ((err as { code?: string }).code !== 'ENOSPC') throw err
            size >>= 1
          }
        }
      } finally {
        closeSync(fd)
      }
    },
    free: () => rmSync(filler, { force: true }),
    unmount() {
      spawnSync('umount', ['-l', dir])
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A POST through the contract suite's client, answered as status and parsed body. */
const post = async (base: string, path: string, body: unknown, token?: string, key?: string) => {
  const res = await client(base).post(path, body, { token, headers: key ? { 'Idempotency-Key': key } : {} })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

const readyz = async (base: string) => {
  const res = await fetch(`${base}/readyz`)
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> }
}

/** A product and a customer, made while the disk has room; the orders table stays empty, so an order needs a new page. */
async function shopWith(server: AppServer) {
  const admin = (await post(server.url, '/v1/auth/login', ADMIN)).body.accessToken as string
  const product = await post(
    server.url,
    '/v1/products',
    { sku: `READY-${Date.now()}`, name: 'Ready', priceCents: 500, stock: 10, category: 'ready' },
    admin,
  )
  expect(product.status).toBe(201)
  const customer = await post(server.url, '/v1/auth/signup', { email: 'ready@example.test', password: 'a customer password', name: 'R' })
  expect(customer.status).toBe(201)
  return { productId: product.body.id as string, token: customer.body.accessToken as string }
}

/**
 * The disk fills: readiness and checkout say so; the disk frees: both
 * recover, and the same Idempotency-Key places the order. Stops the server.
 */
async function fillAndFree(server: AppServer, disk: Tmpfs) {
  try {
    await fillAndFreeOn(server, disk)
  } catch (err) {
    console.error(server.output())
    throw err
  } finally {
    disk.free()
    await server.stop()
  }
}

async function fillAndFreeOn(server: AppServer, disk: Tmpfs) {
  const { productId, token } = await shopWith(server)
  expect((await readyz(server.url)).body).toMatchObject({ status: 'ready', checks: { db: 'ok' } })
  const order = () => post(server.url, '/v1/orders', { items: [{ productId, quantity: 1 }] }, token, 'full-disk-order')

  disk.fill()
  const refused = await order()
  expect(refused.status).toBe(503)
  expect(refused.body.code).toBe('service_unavailable')
  const full = await readyz(server.url)
  expect(full).toMatchObject({ status: 503, retryAfter: '1', body: { status: 'unavailable', checks: { db: 'disk_full' } } })
  expect((await fetch(`${server.url}/v1/products/${productId}`)).status).toBe(200)

  disk.free()
  expect((await readyz(server.url)).body).toMatchObject({ status: 'ready', checks: { db: 'ok' } })
  const placed = await order()
  expect(placed.status).toBe(201)
  expect(placed.body.status).toBe('pending_payment')
}

describe.skipIf(!asRoot)('readiness when writes fail (needs root to mount a tmpfs)', () => {
  const admin = () => postgres(inject('postgresAdminUrl'), { max: 1, onnotice: () => {} })
  const names: string[] = []
  const disks: Tmpfs[] = []
  let n = 0
  const name = (tag: string) => {
    const db = `ready_${tag}_${process.pid}_${n++}`
    names.push(db)
    return db
  }
  const urlOf = (db: string) => inject('postgresAdminUrl').replace(/\/postgres$/, `/${db}`)
  const serverEnv = (url: string) => ({
    NODE_ENV: 'production',
    DATABASE_URL: url,
    JWT_SECRET: SECRET,
    PAYMENT_PROVIDER: 'simulated',
    MAILER: 'recording',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    LOG_LEVEL: 'error',
  })

  beforeAll(() => {
    if (spawnSync('id', ['-u', 'postgres']).status !== 0) throw new Error('the postgres user is needed to own the tablespace')
  })
  afterAll(async () => {
    const sql = admin()
    try {
      for (const db of names) await sql.unsafe(`drop database if exists ${db} with (force)`)
      for (const db of names) await sql.unsafe(`drop tablespace if exists ${db}`).catch(() => {})
    } finally {
      await sql.end()
      for (const disk of disks) disk.unmount()
    }
  })

  it('PostgreSQL with a full disk: /readyz 503 disk_full while checkout answers 503; both recover when space is freed', async () => {
    const db = name('full')
    const disk = mountTmpfs(32, 'postgres')
    disks.push(disk)
    const sql = admin()
    try {
      // The database's tables and its temporary files live on the small disk; the server's WAL does not.
      await sql.unsafe(`create tablespace ${db} location '${disk.dir}'`)
      await sql.unsafe(`create database ${db} tablespace ${db}`)
    } finally {
      await sql.end()
    }
    await applyMigrations(urlOf(db))
    await fillAndFree(await startAppServer('node', serverEnv(urlOf(db))), disk)
  })

  it('PostgreSQL that is read-only: /readyz 503 read_only, writes 503 service_unavailable, reads 200', async () => {
    const db = name('ro')
    const url = urlOf(db)
    const sql = admin()
    try {
      await sql.unsafe(`create database ${db}`)
    } finally {
      await sql.end()
    }
    await applyMigrations(url)
    const server = await startAppServer('node', serverEnv(url))
    let roServer: AppServer | undefined
    try {
      const { productId, token } = await shopWith(server)
      await server.stop()
      // What a database that was made read-only looks like to sessions that start after it (a standby answers the same).
      const alter = admin()
      await alter.unsafe(`alter database ${db} set default_transaction_read_only = on`).finally(() => alter.end())
      roServer = await startAppServer('node', serverEnv(url))
      const ready = await readyz(roServer.url)
      expect(ready).toMatchObject({ status: 503, retryAfter: '1', body: { status: 'unavailable', checks: { db: 'read_only' } } })
      const refused = await post(roServer.url, '/v1/orders', { items: [{ productId, quantity: 1 }] }, token, 'ro-order')
      expect(refused.status).toBe(503)
      expect(refused.body.code).toBe('service_unavailable')
      expect((await fetch(`${roServer.url}/v1/products/${productId}`)).status).toBe(200)
    } finally {
      await server.stop()
      await roServer?.stop()
    }
  })

  it('embedded PGlite with a full disk: /readyz 503 disk_full while checkout answers 503; both recover', async () => {
    const disk = mountTmpfs(160)
    disks.push(disk)
    const embedded = {
      DATA_DIR: disk.dir,
      JWT_SECRET: SECRET,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      LOG_LEVEL: 'error',
    }
    await fillAndFree(await startAppServer('bun', embedded), disk)
    // PGlite's first start (initdb and the migrations, in WASM) takes most of this on a loaded machine.
  }, 120_000)
})
