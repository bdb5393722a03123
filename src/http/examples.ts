/*
 * The walk-through that the OpenAPI document's examples tell: the admin logs
 * in and creates a product, a customer signs up, checks out and pays. The ids
 * and timestamps are shared by the examples of several features, so that the
 * steps read as one story on `/docs`.
 */

/** Ids of the walk-through's admin, customer, product and order. */
export const EXAMPLE_IDS = {
  admin: '0194a1b2-0000-7000-8000-000000000001',
  customer: '0194a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b',
  product: '0194a1b3-1d2e-7f30-9a4b-5c6d7e8f9a0b',
  order: '0194a1b4-2e3f-7a41-8b5c-6d7e8f9a0b1c',
} as const

/** When the walk-through's things were made. */
export const EXAMPLE_TIME = '2026-01-15T09:30:00.000Z'

/** The walk-through's admin, as `ADMIN_EMAIL` and `ADMIN_PASSWORD` would make them. */
export const EXAMPLE_ADMIN = { email: 'admin@example.com', password: 'the ADMIN_PASSWORD value' } as const

/** A session's tokens as they look (not valid ones). */
export const exampleTokens = (subject: string) => ({
  accessToken: `eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.${btoa(JSON.stringify({ sub: subject })).replace(/=+$/, '')}.c2lnbmF0dXJl`,
  refreshToken: 'x3Jq9V0dYk2pW8mZr7LhT1uC5nE4bA6sQfGiHoJyKwM',
  expiresIn: 900,
})
