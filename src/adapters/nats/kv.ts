/**
 * NATS KV buckets (@nats-io/kv) for the cluster's shared state: leases and members
 * (src/app/cluster/leases.ts), idempotency keys and name claims (./idempotency-store.ts,
 * ./name-claims.ts). One connection of its own, so a busy bus (commands, work, notifications)
 * never delays a lease renewal behind its own traffic in the client's write buffer.
 *
 * The server here is 2.9: there is no per-key TTL, so a bucket's `ttlMs` (the stream's max_age)
 * is the TTL of every entry, counted from its last write. CAS is `create` (only if absent or
 * deleted) and `update(key, value, revision)`.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, JetStreamApiError, JetStreamApiCodes } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { Logger } from '../../ports/logger.js';

export interface NatsKvOptions {
  /** NATS_URL: one URL or several separated by commas. */
  servers: string;
  name?: string;
  log: Logger;
  /** Bound on each KV operation. Default 2000 ms. */
  timeoutMs?: number;
}

export interface BucketOptions {
  description: string;
  /** Entries older than this (since their last write) are removed by the server. 0: never. */
  ttlMs: number;
  /** Values kept per key (1: only the current one). */
  history?: number;
}

export interface NatsKv {
  /** Opens the bucket, creating it (or updating its limits) when needed. */
  bucket(name: string, options: BucketOptions): Promise<KV>;
  close(): Promise<void>;
}

export async function connectNatsKv(options: NatsKvOptions): Promise<NatsKv> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  const nc: NatsConnection = await connect({
    servers: options.servers.split(',').map((s) => s.trim()).filter(Boolean),
    name: `${options.name ?? 'ironclad'} (kv)`,
    maxReconnectAttempts: -1,
    timeout: timeoutMs,
    noAsyncTraces: true, // no Error (with its stack) built for every KV call
  });
  const kvm = new Kvm(jetstream(nc, { timeout: timeoutMs }));
  const replicas = nc.info?.cluster ? 3 : 1;
  let closed = false;
  return {
    async bucket(name, o) {
      const kv = await kvm.create(name, { description: o.description, ttl: o.ttlMs, history: o.history ?? 1, replicas, timeout: timeoutMs });
      // An existing bucket keeps its limits: bring its TTL in line, since the lease fencing relies on it.
      const status = await kv.status();
      if (status.ttl !== o.ttlMs) {
        const jsm = await jetstreamManager(nc, { timeout: timeoutMs });
        const ns = (ms: number): number => ms * 1_000_000;
        // The duplicate window may not exceed max_age (the bucket's own default is min(ttl, 2 min)).
        await jsm.streams.update(status.streamInfo.config.name, { max_age: ns(o.ttlMs), ...(o.ttlMs > 0 ? { duplicate_window: ns(Math.min(o.ttlMs, 120_000)) } : {}) });
        options.log.warn({ bucket: name, from_ms: status.ttl, to_ms: o.ttlMs }, 'KV bucket TTL changed (every process must use the same value)');
      }
      return kv;
    },
    async close() {
      if (closed) return;
      closed = true;
      await nc.drain().catch(() => nc.close());
    },
  };
}

/** True when a KV write failed only because the key was not at the expected revision (CAS lost). */
export function isRevisionConflict(err: unknown): boolean {
  if (err instanceof JetStreamApiError) {
    return err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown;
  }
  return /wrong last sequence/i.test((err as Error | null)?.message ?? '');
}

/** The entry's value as JSON, or null when absent or deleted. */
export async function getJson<T>(kv: KV, key: string): Promise<{ value: T; revision: number } | null> {
  const e = await kv.get(key);
  if (!e || e.operation !== 'PUT' || e.length === 0) return null;
  return { value: e.json<T>(), revision: e.revision };
}
