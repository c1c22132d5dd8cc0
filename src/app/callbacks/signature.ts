/** Webhook signatures: `Ironclad-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`. */
import { createHmac, timingSafeEqual } from 'node:crypto';

export function signPayload(secret: string, unixSeconds: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

/** What a receiver does: recompute and compare in constant time (exported for tests and clients). */
export function verifySignature(secret: string, header: string, body: string): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const expected = Buffer.from(signPayload(secret, Number(m[1]), body).split('v1=')[1]!, 'hex');
  return timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'));
}

/** Parses IRONCLAD_WEBHOOK_SECRETS (`tenant=secret,...`) with IRONCLAD_WEBHOOK_SECRET as the default. */
export function webhookSecrets(perTenant: string | undefined, fallback: string): (tenant: string) => string {
  const map = new Map<string, string>();
  for (const entry of (perTenant ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const i = entry.indexOf('=');
    if (i <= 0) throw new Error('IRONCLAD_WEBHOOK_SECRETS entries must be tenant=secret');
    map.set(entry.slice(0, i), entry.slice(i + 1));
  }
  return (tenant) => map.get(tenant) ?? fallback;
}
