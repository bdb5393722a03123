import { z } from '@hono/zod-openapi'
import { text } from '../../http/text.ts'
import { EMAIL } from '../../lib/email.ts'

const email = text({
  max: 254,
  pattern: EMAIL,
  message: 'must be an email address',
  description:
    'Compared case-insensitively. A dot-atom local part (`o!reilly@example.com`); quoted local parts and address literals are refused.',
}).openapi({ format: 'email', example: 'ada@example.com' })

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
    password: text({ min: 10, max: 128, description: 'Any text of 10 to 128 characters, kept exactly as sent.' }),
    name: text({ min: 1, max: 100, trim: true }),
  })
  .openapi('SignupRequest', { description: 'Unknown fields (such as `role`) are refused: every account starts as a customer.' })

export const LoginRequest = z
  .strictObject({
    email,
    password: text({ min: 1, max: 128 }),
  })
  .openapi('LoginRequest')

export const RefreshRequest = z.strictObject({ refreshToken: text({ min: 1, max: 512 }) }).openapi('RefreshRequest')
