/**
 * Bearer tokens (api.md "Auth"). Tokens are looked up by their SHA-256 digest and the digest
 * is compared in constant time; the token itself is never stored in clear, logged or echoed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errors } from '../domain/errors.js';
import { Roles, type Principal, type Role } from '../domain/principal.js';

export interface TokenTable {
  open: boolean;
  authenticate(header: string | undefined): Principal;
}

const digest = (t: string): Buffer => createHash('sha256').update(t, 'utf8').digest();

/** Parses `token=tenant:role` entries (comma- or newline-separated). Throws on a malformed entry. */
export function parseTokens(spec: string): Map<string, { digest: Buffer; principal: Principal }> {
  const out = new Map<string, { digest: Buffer; principal: Principal }>();
  const entries = spec.split(/[,\n]/).map((s) => s.trim()).filter((s) => s && !s.startsWith('#'));
  entries.forEach((entry, i) => {
    const m = /^([^=\s]+)=([A-Za-z0-9._-]+):([a-z]+)$/.exec(entry);
    if (!m || !(Roles as readonly string[]).includes(m[3]!)) {
      throw new Error(`IRONCLAD_TOKENS entry ${i + 1} is not "token=tenant:role" with role admin|member|reader`);
    }
    const d = digest(m[1]!);
    out.set(d.toString('hex'), { digest: d, principal: { id: `${m[2]}:${m[3]}#${i + 1}`, tenant: m[2]!, role: m[3] as Role } });
  });
  return out;
}

export function createTokenTable(spec: string | undefined, file: string | undefined): TokenTable {
  const text = [spec ?? '', file ? readFileSync(file, 'utf8') : ''].join('\n');
  const tokens = parseTokens(text);
  const open = tokens.size === 0;
  const openPrincipal: Principal = { id: 'default:admin#open', tenant: 'default', role: 'admin' };
  return {
    open,
    authenticate(header) {
      if (open) return openPrincipal;
      const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
      if (!m) throw errors.unauthorized('Send Authorization: Bearer <token>.');
      const d = digest(m[1]!);
      const hit = tokens.get(d.toString('hex'));
      if (!hit || !timingSafeEqual(hit.digest, d)) throw errors.unauthorized('The token is not valid.');
      return hit.principal;
    },
  };
}

/** True for 127.0.0.0/8, ::1 and localhost: the only addresses open mode may bind. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
