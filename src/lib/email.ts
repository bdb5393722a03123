/**
 * An address as RFC 5321 writes most of them: a dot-atom local part (so
 * `o!reilly@example.com`), and a domain of DNS labels ending in a top-level
 * domain of letters. Quoted local parts and address literals are refused.
 * Every address it accepts is a valid JSON Schema `email`. Signup, login and
 * the configured admin all go by it, so any address one accepts the others do.
 *
 * @example
 * ```ts
 * EMAIL.test('o!reilly@example.com') // true
 * ```
 */
export const EMAIL =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$/
