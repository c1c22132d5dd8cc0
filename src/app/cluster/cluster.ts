/**
 * The shared state of a NATS-mode process, in one place for the composition root: a KV
 * connection, the lease manager (this process's Ownership), and the shared idempotency keys and
 * name claims. Buckets:
 *   ironclad_leases        members, partition and leader leases (max_age = lease TTL)
 *   ironclad_idempotency   Idempotency-Key records (max_age = IRONCLAD_IDEMPOTENCY_RETENTION_S)
 *   ironclad_names         name claims (no expiry)
 */
import { randomUUID } from 'node:crypto';
import { connectNatsKv, type NatsKv } from '../../adapters/nats/kv.js';
import { createKvIdempotencyStore } from '../../adapters/nats/idempotency-store.js';
import { createKvNameClaims, type KvNameClaims } from '../../adapters/nats/name-claims.js';
import type { Logger } from '../../ports/logger.js';
import type { IdempotencyStore } from '../idempotency-store.js';
import { NotOwnerError } from './actor-host.js';
import { createLeaseManager, type LeaseManager } from './leases.js';
import type { Ownership } from './ownership.js';

export const BUCKETS = { leases: 'ironclad_leases', idempotency: 'ironclad_idempotency', names: 'ironclad_names' } as const;

export interface ClusterOptions {
  servers: string;
  /** Shown in lease values and by the server (`host:port`). */
  name: string;
  partitions: number;
  leaseTtlMs: number;
  idempotencyRetentionMs: number;
  log: Logger;
  /** Wall-clock ms for idempotency and claim timestamps (the injected clock). */
  now: () => number;
}

export interface ClusterParts {
  kv: NatsKv;
  leases: LeaseManager;
  idempotency: IdempotencyStore;
  names: { node: KvNameClaims; stack: KvNameClaims };
  close(): Promise<void>;
}

export async function connectCluster(o: ClusterOptions): Promise<ClusterParts> {
  const kv = await connectNatsKv({ servers: o.servers, name: `ironclad ${o.name}`, log: o.log, timeoutMs: Math.max(500, Math.floor(o.leaseTtlMs / 4)) });
  try {
    const leaseBucket = await kv.bucket(BUCKETS.leases, { description: 'Ironclad members, partition and leader leases (max_age = lease TTL)', ttlMs: o.leaseTtlMs });
    const idemBucket = await kv.bucket(BUCKETS.idempotency, { description: 'Ironclad Idempotency-Key records', ttlMs: o.idempotencyRetentionMs });
    const namesBucket = await kv.bucket(BUCKETS.names, { description: 'Ironclad name claims (unique per owner)', ttlMs: 0 });
    const leases = createLeaseManager({
      kv: leaseBucket, memberId: randomUUID(), name: o.name, partitions: o.partitions, ttlMs: o.leaseTtlMs, log: o.log.child({ component: 'leases' }),
    });
    return {
      kv, leases,
      idempotency: createKvIdempotencyStore(idemBucket, { retentionMs: o.idempotencyRetentionMs, abandonAfterMs: 120_000, now: o.now }),
      names: { node: createKvNameClaims(namesBucket, 'node', o.now), stack: createKvNameClaims(namesBucket, 'stack', o.now) },
      async close() {
        await leases.stop();
        await kv.close();
      },
    };
  } catch (err) {
    await kv.close();
    throw err;
  }
}

/** The actor runtime's guard in cluster mode: decide only on entities whose partition this process holds. */
export const ownedOrThrow = (ownership: Ownership) => (id: string): void => {
  if (!ownership.ownsEntity(id)) throw new NotOwnerError(id);
};
