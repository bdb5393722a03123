/** The roles an account can have. */
export type Role = 'customer' | 'admin'

/** Who a verified access token speaks for. */
export interface Principal {
  userId: string
  role: Role
}
