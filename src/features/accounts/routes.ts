import { createRoute, OpenAPIHono } from '@hono/zod-openapi'
import type { Context } from 'hono'
import { authenticate } from '../../http/auth.ts'
import { clientIp, rateLimitSubject } from '../../http/client-ip.ts'
import type { AppEnv, HttpServices, RequestScope } from '../../http/context.ts'
import { EXAMPLE_ADMIN, EXAMPLE_IDS, EXAMPLE_TIME, exampleTokens } from '../../http/examples.ts'
import { json, jsonBody, problems } from '../../http/openapi.ts'
import { rateLimit } from '../../http/rate-limit.ts'
import { sha256Hex } from '../../lib/bytes.ts'
import { LoginRequest, RefreshRequest, Session, SignupRequest, User } from './schemas.ts'
import { type AccountsService, login, logout, me, normalizeEmail, refresh, signup } from './service.ts'

/** Routes anyone may call. */
const open: [] = []

const customer = {
  id: EXAMPLE_IDS.customer,
  email: 'ada@example.com',
  name: 'Ada Lovelace',
  role: 'customer' as const,
  createdAt: EXAMPLE_TIME,
}
const admin = { id: EXAMPLE_IDS.admin, email: EXAMPLE_ADMIN.email, name: 'Administrator', role: 'admin' as const, createdAt: EXAMPLE_TIME }

const limitedProblems = ['validation_failed', 'invalid_json', 'unsupported_media_type', 'rate_limited', 'service_unavailable'] as const

/** The request's body as JSON, if it is JSON; read once and cached by Hono, so validation reads the same. */
async function bodyField(c: Context<AppEnv>, field: string): Promise<string | undefined> {
  const body = await c.req.json().catch(() => undefined)
  const value = body && typeof body === 'object' ? (body as Record<string, unknown>)[field] : undefined
  return typeof value === 'string' ? value : undefined
}

const signupRoute = createRoute({
  method: 'post',
  path: '/v1/auth/signup',
  operationId: 'signup',
  tags: ['Accounts'],
  summary: 'Create a customer account',
  description: 'Creates a customer and logs them in. Rate limited per client IP and per email (`RATE_LIMIT_AUTH`).',
  security: open,
  request: { body: jsonBody(SignupRequest, { email: 'ada@example.com', password: 'correct horse battery', name: 'Ada Lovelace' }) },
  responses: {
    201: json(Session, 'The new account and its first tokens', { user: customer, ...exampleTokens(EXAMPLE_IDS.customer) }),
    ...problems('email_taken', ...limitedProblems),
  },
})

const loginRoute = createRoute({
  method: 'post',
  path: '/v1/auth/login',
  operationId: 'login',
  tags: ['Accounts'],
  summary: 'Log in',
  description:
    'An unknown email and a wrong password get the same answer in similar time. Rate limited per client IP and per email. The example logs in as the admin that `ADMIN_EMAIL` and `ADMIN_PASSWORD` make.',
  security: open,
  request: { body: jsonBody(LoginRequest, { ...EXAMPLE_ADMIN }) },
  responses: {
    200: json(Session, 'A new token family', { user: admin, ...exampleTokens(EXAMPLE_IDS.admin) }),
    ...problems('invalid_credentials', ...limitedProblems),
  },
})

const refreshRoute = createRoute({
  method: 'post',
  path: '/v1/auth/refresh',
  operationId: 'refreshSession',
  tags: ['Accounts'],
  summary: 'Rotate a refresh token',
  description:
    'Answers a new pair; the presented token stops working. Presenting a token that was already rotated revokes its whole family (`refresh_token_reused`): whoever holds the newer token must log in again too. Of two concurrent refreshes of one token, exactly one succeeds.',
  security: open,
  request: { body: jsonBody(RefreshRequest) },
  responses: { 200: json(Session, 'The next pair of the family'), ...problems('refresh_token_reused', 'unauthorized', ...limitedProblems) },
})

const logoutRoute = createRoute({
  method: 'post',
  path: '/v1/auth/logout',
  operationId: 'logout',
  tags: ['Accounts'],
  summary: 'Log out',
  description: "Revokes the refresh token's family. Answers 204 whether or not the token was known.",
  security: open,
  request: { body: jsonBody(RefreshRequest) },
  responses: {
    204: { description: 'Logged out' },
    ...problems('validation_failed', 'invalid_json', 'unsupported_media_type', 'service_unavailable'),
  },
})

const meRoute = createRoute({
  method: 'get',
  path: '/v1/me',
  operationId: 'getMe',
  tags: ['Accounts'],
  summary: 'The caller’s account',
  security: [{ bearerAuth: [] }],
  responses: { 200: json(User, 'The account'), ...problems('unauthorized', 'service_unavailable') },
})

/** What the accounts routes use: the HTTP layer's services and the accounts service. */
export interface AccountsRouteServices extends HttpServices {
  accounts(scope: RequestScope): AccountsService
}

/** Signup, login, refresh, logout and `/v1/me`. */
export function accountsRoutes(services: AccountsRouteServices) {
  const { config } = services
  const rule = (name: string) => ({ name, limit: config.rateLimitAuth.limit, windowSeconds: config.rateLimitAuth.windowSeconds })
  const ipKey = (c: Context<AppEnv>) => `ip:${rateLimitSubject(clientIp(c, services))}`
  const byIpAndEmail = async (c: Context<AppEnv>) => {
    const email = await bodyField(c, 'email')
    return email ? [ipKey(c), `email:${normalizeEmail(email)}`] : [ipKey(c)]
  }
  const byIpAndToken = async (c: Context<AppEnv>) => {
    const token = await bodyField(c, 'refreshToken')
    return token ? [ipKey(c), `token:${sha256Hex(token).slice(0, 32)}`] : [ipKey(c)]
  }
  const accounts = (c: Context<AppEnv>) => services.accounts(c.get('scope'))
  const noStore = { 'Cache-Control': 'no-store' }

  return new OpenAPIHono<AppEnv>()
    .openapi(
      { ...signupRoute, middleware: [rateLimit(services, { rule: rule('signup'), keys: byIpAndEmail, onUnavailable: 'closed' })] },
      async (c) => c.json(await signup(accounts(c), c.req.valid('json')), 201, noStore),
    )
    .openapi(
      { ...loginRoute, middleware: [rateLimit(services, { rule: rule('login'), keys: byIpAndEmail, onUnavailable: 'closed' })] },
      async (c) => c.json(await login(accounts(c), c.req.valid('json')), 200, noStore),
    )
    .openapi(
      { ...refreshRoute, middleware: [rateLimit(services, { rule: rule('refresh'), keys: byIpAndToken, onUnavailable: 'closed' })] },
      async (c) => c.json(await refresh(accounts(c), c.req.valid('json').refreshToken), 200, noStore),
    )
    .openapi(logoutRoute, async (c) => {
      await logout(accounts(c), c.req.valid('json').refreshToken)
      return c.body(null, 204)
    })
    .openapi({ ...meRoute, middleware: [authenticate(services)] }, async (c) =>
      c.json(await me(c.get('scope').db, c.get('principal').userId), 200, { 'Cache-Control': 'private, no-store' }),
    )
}
