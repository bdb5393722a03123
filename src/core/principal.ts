/** The roles an account can have. */
export type Role = 'customer' | 'admin'

/** Who a verified access token speaks for. */
export interface Principal {
  userId: string
  role: Role
}

/** Checks an access token; what `authenticate()` needs of the accounts feature's tokens. */
export interface TokenVerifier {
  /** Throws 401 `unauthorized` for anything but a valid, unexpired token of ours. */
  verify(token: string): Promise<Principal>
}
