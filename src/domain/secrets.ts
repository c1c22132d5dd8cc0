/** Which driver_info keys are secret, and how they look sealed, redacted and opened. */
import type { SecretBox } from '../ports/secrets.js';

export const REDACTED = '******';
const SECRET_KEY = /password|secret|token/i;

export const isSecretKey = (key: string): boolean => SECRET_KEY.test(key);

interface Sealed {
  $sealed: string;
  /** Deterministic keyed digest, so identical commands with the same secret still coalesce. */
  $digest?: string;
}
const isSealed = (v: unknown): v is Sealed => typeof v === 'object' && v !== null && typeof (v as Sealed).$sealed === 'string';

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Seals the leaves under a secret key; recurses into objects and arrays (a secret may be nested). */
function sealValue(v: unknown, secret: boolean, box: SecretBox): unknown {
  if (v === null || v === undefined || isSealed(v)) return v;
  if (Array.isArray(v)) return v.map((x) => sealValue(x, secret, box));
  if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, sealValue(x, secret || isSecretKey(k), box)]));
  return secret ? { $sealed: box.seal(String(v)), $digest: box.digest(String(v)) } : v;
}

/**
 * Replaces every secret value by its sealed form (for events), at any depth: a value under a
 * secret key (or any leaf below one) is sealed. Already sealed values stay.
 */
export function sealSecrets(info: Record<string, unknown>, box: SecretBox): Record<string, unknown> {
  return sealValue(info, false, box) as Record<string, unknown>;
}

function redactValue(v: unknown): unknown {
  if (isSealed(v)) return REDACTED;
  if (Array.isArray(v)) return v.map(redactValue);
  if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, isSecretKey(k) ? REDACTED : redactValue(x)]));
  return v;
}

/** Replaces every secret value, at any depth, by "******" (for responses, logs, notifications, history). */
export function redactSecrets(info: Record<string, unknown>): Record<string, unknown> {
  return redactValue(info) as Record<string, unknown>;
}

function openValue(v: unknown, box: SecretBox): unknown {
  if (isSealed(v)) return box.open(v.$sealed);
  if (Array.isArray(v)) return v.map((x) => openValue(x, box));
  if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, openValue(x, box)]));
  return v;
}

/** Opens sealed values at any depth (for drivers only). */
export function openSecrets(info: Record<string, unknown>, box: SecretBox): Record<string, unknown> {
  return openValue(info, box) as Record<string, unknown>;
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
