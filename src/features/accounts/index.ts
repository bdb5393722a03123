/*
 * The accounts feature's public surface: what the rest of src/ may use.
 * Signup, login, refresh tokens and the admin account; access tokens are
 * JWTs (tokens.ts), passwords argon2id or PBKDF2 (password.ts).
 */
export {
  createPasswordHasher,
  type PasswordAlgorithm,
  type PasswordHasher,
  pbkdf2Sha256,
  WORKERS_PBKDF2_MAX_ITERATIONS,
  workersPasswordAlgorithm,
} from './password.ts'
export { type AccountsRouteServices, accountsRoutes } from './routes.ts'
export { type AccountsService, ensureAdmin, purgeRefreshTokens } from './service.ts'
export { type AccessTokens, createAccessTokens } from './tokens.ts'
