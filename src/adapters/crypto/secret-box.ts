/**
 * AES-256-GCM secret box. The key comes from IRONCLAD_SECRET_KEY (64 hex chars) or, in the
 * embedded default, from a key file created once in the data directory (mode 0600).
 * Why encryption and not a separate secret table: the sealed value travels with the event, so
 * KurrentDB mode and replay need nothing extra, and a leaked log holds no clear secret.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { SecretBox } from '../../ports/secrets.js';

const PREFIX = 'v1:';

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new Error('secret key must be 32 bytes (64 hex characters)');
  const digestKey = createHmac('sha256', key).update('ironclad-digest-v1').digest();
  return {
    digest: (plain) => createHmac('sha256', digestKey).update(plain, 'utf8').digest('base64url'),
    seal(plain) {
      const iv = randomBytes(12);
      const c = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
      return PREFIX + Buffer.concat([iv, c.getAuthTag(), body]).toString('base64url');
    },
    open(sealed) {
      if (!sealed.startsWith(PREFIX)) throw new Error('not a sealed value');
      const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64url');
      const d = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
    },
  };
}

/** Reads the key from the environment value, or from (creating if needed) a key file. */
export function loadSecretKey(envHex: string | undefined, keyFile: string): Buffer {
  if (envHex) return Buffer.from(envHex, 'hex');
  if (existsSync(keyFile)) return Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'hex');
  const key = randomBytes(32);
  writeFileSync(keyFile, key.toString('hex'), { mode: 0o600 });
  return key;
}
