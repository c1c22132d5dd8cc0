/**
 * Idempotency keys shared by every process of a NATS-mode fleet (same semantics as the SQLite
 * store, src/app/idempotency-store.ts): one KV entry per (tenant, key), claimed with a CAS
 * `create`, taken over with a CAS `update` when expired or abandoned, so two processes racing
 * on one key cannot both own it. The bucket's TTL is the retention (entries expire by themselves;
 * `purgeExpired` has nothing to do).
 */
import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import type { ClaimResult, IdempotencyStore, StoredAnswer } from '../../app/idempotency-store.js';
import { getJson, isRevisionConflict } from './kv.js';

interface Entry {
  fingerprint: string;
  answer: StoredAnswer | null;
  created_at: number;
  updated_at: number;
}

/** The bucket key: a hash, so any tenant or Idempotency-Key (1–255 arbitrary characters) is a valid KV key. */
const keyOf = (tenant: string, key: string): string => `k.${createHash('sha256').update(`${tenant}\u0000${key}`).digest('hex')}`;

export function createKvIdempotencyStore(kv: KV, opts: { retentionMs: number; abandonAfterMs: number; now: () => number }): IdempotencyStore {
  async function claimOnce(tenant: string, key: string, fingerprint: string): Promise<ClaimResult | null> {
    const k = keyOf(tenant, key);
    const now = opts.now();
    const fresh = JSON.stringify({ fingerprint, answer: null, created_at: now, updated_at: now } satisfies Entry);
    const cur = await getJson<Entry>(kv, k);
    try {
      if (!cur) {
        await kv.create(k, fresh);
        return { kind: 'claimed' };
      }
      const row = cur.value;
      const expired = row.created_at < now - opts.retentionMs;
      // An unanswered claim older than abandonAfterMs belongs to a process that died mid-request: take it over.
      const abandoned = row.answer === null && row.updated_at < now - opts.abandonAfterMs;
      if (expired || abandoned) {
        await kv.update(k, fresh, cur.revision);
        return { kind: 'claimed' };
      }
      if (row.fingerprint !== fingerprint) return { kind: 'mismatch' };
      if (row.answer === null) return { kind: 'in_flight' };
      return { kind: 'replay', answer: row.answer };
    } catch (err) {
      if (isRevisionConflict(err)) return null; // another process wrote the key meanwhile: look again
      throw err;
    }
  }

  return {
    async claim(tenant, key, fingerprint) {
      for (let i = 0; i < 5; i++) {
        const r = await claimOnce(tenant, key, fingerprint);
        if (r) return r;
      }
      return { kind: 'in_flight' };
    },
    async complete(tenant, key, fingerprint, answer) {
      const k = keyOf(tenant, key);
      const cur = await getJson<Entry>(kv, k);
      if (!cur || cur.value.fingerprint !== fingerprint) return;
      await kv.update(k, JSON.stringify({ ...cur.value, answer, updated_at: opts.now() } satisfies Entry), cur.revision).catch((err: unknown) => {
        if (!isRevisionConflict(err)) throw err;
      });
    },
    async release(tenant, key) {
      const k = keyOf(tenant, key);
      const cur = await getJson<Entry>(kv, k);
      if (!cur || cur.value.answer !== null) return;
      await kv.delete(k, { previousSeq: cur.revision }).catch((err: unknown) => {
        if (!isRevisionConflict(err)) throw err;
      });
    },
    purgeExpired: () => 0,
  };
}
