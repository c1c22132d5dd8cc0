/**
 * Secrets (BMC passwords, tokens in driver_info) are sealed before they enter an event, so the
 * log, history, replay and notifications only ever carry ciphertext. Only a driver opens them.
 */
export interface SecretBox {
  seal(plain: string): string;
  open(sealed: string): string;
  /** A keyed, deterministic digest of a secret: equal secrets compare equal without being readable. */
  digest(plain: string): string;
}
