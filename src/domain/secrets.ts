/** Which driver_info keys are secret, and how they look sealed, redacted and opened. */
import type { SecretBox } from '../ports/secrets.js';

export const REDACTED = '******';
const SECRET_KEY = /password|secret|token/i;

export const isSecretKey = (key: string): boolean => SECRET_KEY.test(key);

interface Sealed {
  $sealed: string;
}
const isSealed = (v: unknown): v is Sealed => typeof v === 'object' && v !== null && typeof (v as Sealed).$sealed === 'string';

/** Replaces every secret value by its sealed form (for events). Already sealed values stay. */
export function sealSecrets(info: Record<string, unknown>, box: SecretBox): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) {
    out[k] = isSecretKey(k) && v !== null && v !== undefined && !isSealed(v) ? { $sealed: box.seal(String(v)) } : v;
  }
  return out;
}

/** Replaces every secret value by "******" (for responses, logs, notifications, history). */
export function redactSecrets(info: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) out[k] = isSecretKey(k) || isSealed(v) ? REDACTED : v;
  return out;
}

/** Opens sealed values (for drivers only). */
export function openSecrets(info: Record<string, unknown>, box: SecretBox): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(info)) out[k] = isSealed(v) ? box.open(v.$sealed) : v;
  return out;
}

/** Redacts sealed values anywhere inside an event payload (history, SSE, replay output). */
export function redactDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactDeep);
  if (isSealed(value)) return REDACTED;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = isSecretKey(k) && typeof v !== 'object' ? REDACTED : redactDeep(v);
    return out;
  }
  return value;
}
