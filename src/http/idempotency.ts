/**
 * The Idempotency-Key hook for POST/PUT/PATCH/DELETE: same key + same request (method, path,
 * canonical body, principal) → the stored answer with `Idempotent-Replayed: true`; a different
 * request → 422; still running → 409. Registered once on the server, not in each route.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IdempotencyStore } from '../app/idempotency-store.js';
import { canonical } from '../domain/node/rules.js';
import { IroncladError } from '../domain/errors.js';

const METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const KEPT_HEADERS = ['location', 'etag', 'ironclad-position', 'retry-after', 'content-type', 'preference-applied'];

declare module 'fastify' {
  interface FastifyRequest {
    idempotency: { tenant: string; key: string; fingerprint: string } | null;
  }
}

function fingerprint(req: FastifyRequest): string {
  const path = req.url.split('?')[0];
  return createHash('sha256').update(`${req.method} ${path}\n${req.principal?.id ?? ''}\n${canonical(req.body ?? null)}`).digest('hex');
}

export function registerIdempotency(app: FastifyInstance, store: IdempotencyStore): void {
  app.decorateRequest('idempotency', null);
  // preValidation: after auth and body parsing, before the route's own validation.
  app.addHook('preValidation', async (req: FastifyRequest, reply: FastifyReply) => {
    const key = req.headers['idempotency-key'];
    if (!METHODS.has(req.method) || typeof key !== 'string' || !req.principal) return;
    if (key.length === 0 || key.length > 255) {
      throw new IroncladError('validation_failed', 'Idempotency-Key must be 1 to 255 characters.', { errors: [{ path: 'header.idempotency-key', message: 'must be 1 to 255 characters' }] });
    }
    const fp = fingerprint(req);
    const tenant = req.principal.tenant;
    const res = await store.claim(tenant, key, fp);
    switch (res.kind) {
      case 'claimed':
        req.idempotency = { tenant, key, fingerprint: fp };
        return;
      case 'mismatch':
        throw new IroncladError('idempotency_key_reused', `Idempotency-Key "${key}" was used with a different request.`);
      case 'in_flight':
        reply.header('Retry-After', '1');
        throw new IroncladError('idempotency_key_in_use', `A request with Idempotency-Key "${key}" is still being processed; retry shortly.`);
      case 'replay':
        for (const [h, v] of Object.entries(res.answer.headers)) reply.header(h, v);
        reply.header('Idempotent-Replayed', 'true');
        return reply.code(res.answer.status).send(res.answer.body);
    }
  });
  app.addHook('onSend', async (req, reply, payload) => {
    const idem = req.idempotency;
    if (!idem) return payload;
    req.idempotency = null;
    const status = reply.statusCode;
    if (status >= 500 || status === 429) {
      await store.release(idem.tenant, idem.key);
      return payload;
    }
    const headers: Record<string, string> = {};
    for (const h of KEPT_HEADERS) {
      const v = reply.getHeader(h);
      if (v !== undefined) headers[h] = String(v);
    }
    await store.complete(idem.tenant, idem.key, idem.fingerprint, { status, headers, body: typeof payload === 'string' ? payload : payload === null || payload === undefined ? '' : String(payload) });
    return payload;
  });
}
