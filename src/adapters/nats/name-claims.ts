/**
 * Name claims shared by every process of a NATS-mode fleet (same interface as the SQLite claims,
 * src/app/read-models/name-claims.ts, but async): one KV entry per (scope, owner, name) holding
 * the entity id, taken with a CAS `create`, so two processes enrolling the same name at once
 * cannot both get it. No TTL: a claim lives until released.
 */
import { createHash } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import type { NameScope } from '../../app/read-models/name-claims.js';
import { getJson, isRevisionConflict } from './kv.js';

interface Claim {
  entity_id: string;
  owner: string;
  name: string;
  claimed_at: number;
}

/** What `reconcile` checks claims against: the read model of the scope (caught up). */
export interface NamedEntities {
  get(id: string): { name: string | null; owner: string; deleted: boolean } | null | undefined;
  allNamed(): Iterable<{ id: string; name: string | null; owner: string }>;
}

export interface KvNameClaims {
  claim(ownerTenant: string, name: string, entityId: string): Promise<boolean>;
  release(ownerTenant: string, name: string, entityId: string): Promise<void>;
  /**
   * Drops claims older than `staleAfterMs` that the read model does not back (a request that died
   * before its append) and restores claims the read model holds. Younger claims may belong to a
   * request still running in another process, so they are left alone.
   */
  reconcile(source: NamedEntities, staleAfterMs: number): Promise<{ dropped: number; added: number }>;
}

export function createKvNameClaims(kv: KV, scope: NameScope, now: () => number): KvNameClaims {
  const keyOf = (owner: string, name: string): string => `${scope}.${createHash('sha256').update(`${owner}\u0000${name}`).digest('hex')}`;
  async function claim(owner: string, name: string, entityId: string): Promise<boolean> {
    const k = keyOf(owner, name);
    for (let i = 0; i < 5; i++) {
      try {
        await kv.create(k, JSON.stringify({ entity_id: entityId, owner, name, claimed_at: now() } satisfies Claim));
        return true;
      } catch (err) {
        if (!isRevisionConflict(err)) throw err;
      }
      const cur = await getJson<Claim>(kv, k);
      if (cur) return cur.value.entity_id === entityId;
      // released between our create and our read: try again
    }
    return false;
  }
  async function release(owner: string, name: string, entityId: string): Promise<void> {
    const k = keyOf(owner, name);
    const cur = await getJson<Claim>(kv, k);
    if (!cur || cur.value.entity_id !== entityId) return;
    await kv.delete(k, { previousSeq: cur.revision }).catch((err: unknown) => {
      if (!isRevisionConflict(err)) throw err;
    });
  }
  return {
    claim,
    release,
    async reconcile(source, staleAfterMs) {
      let dropped = 0;
      let added = 0;
      const keys: string[] = [];
      for await (const k of await kv.keys(`${scope}.>`)) keys.push(k);
      for (const k of new Set(keys)) {
        const cur = await getJson<Claim>(kv, k);
        if (!cur || cur.value.claimed_at > now() - staleAfterMs) continue;
        const e = source.get(cur.value.entity_id);
        if (e && !e.deleted && e.name === cur.value.name && e.owner === cur.value.owner) continue;
        await kv.delete(k, { previousSeq: cur.revision }).then(() => dropped++, () => undefined);
      }
      for (const e of source.allNamed()) {
        if (e.name !== null && (await getJson<Claim>(kv, keyOf(e.owner, e.name))) === null && (await claim(e.owner, e.name, e.id))) added++;
      }
      return { dropped, added };
    },
  };
}
