import { z } from '@hono/zod-openapi'

const email = z.email({ error: 'must be an email address' }).max(254).openapi({ example: 'ada@example.com' })

export const User = z
  .object({
    id: z.uuid(),
    email: z.string().openapi({ description: 'Stored lower-cased; emails compare case-insensitively.' }),
    name: z.string(),
    role: z.enum(['customer', 'admin']),
    createdAt: z.iso.datetime(),
  })
  .openapi('User')

export const Session = z
  .object({
    user: User,
    accessToken: z.string().openapi({ description: 'A JWT (HS256) for `Authorization: Bearer`.' }),
    refreshToken: z.string().openapi({ description: 'Opaque, single use: every refresh returns a new one and retires this one.' }),
    expiresIn: z.number().int().openapi({ description: 'Seconds until the access token expires.', example: 900 }),
  })
  .openapi('Session')

export const SignupRequest = z
  .strictObject({
    email,
    password: z.string().min(10, 'must be at least 10 characters').max(128, 'must be at most 128 characters'),
    name: z.string().trim().min(1, 'must not be empty').max(100, 'must be at most 100 characters'),
  })
  .openapi('SignupRequest', { description: 'Unknown fields (such as `role`) are refused: every account starts as a customer.' })

export const LoginRequest = z
  .strictObject({
    email,
    password: z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters'),
  })
  .openapi('LoginRequest')

export const RefreshRequest = z
  .strictObject({ refreshToken: z.string().min(1, 'must not be empty').max(512, 'is too long') })
  .openapi('RefreshRequest')
