/**
 * Plumbing shared by the event store contract files: the per-test store, unique stream names and
 * the quirks an adapter declares. Quirks are parameters; the suite is never forked per adapter.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach } from 'vitest';
import type { EventStore, NewEvent, StoredEvent } from '../../src/ports/event-store.js';

export type EventStoreFactory = () => Promise<{ store: EventStore; cleanup: () => Promise<void> }>;

export interface EventStoreContractOptions {
  /**
   * The global log holds other writers' events too (a shared KurrentDB server): assertions that
   * need an empty log are skipped and readAll/subscribeAll results are filtered to this test's streams.
   */
  sharedLog?: boolean;
  /** The store rejects an event id already stored in ANOTHER stream (KurrentDB has no global id index). Default true. */
  rejectsIdsFromOtherStreams?: boolean;
  /**
   * A retry whose `expected` equals the stream's CURRENT revision is still recognised. Default true.
   * KurrentDB checks ids only when `expected` is behind the stream, and a full scan on every append
   * would cost too much; callers retry with their original expected revision, which is covered.
   */
  dedupsRetryAtCurrentRevision?: boolean;
  /** Prefix of every stream name the suite creates (make it unique per run on a shared server). */
  streamPrefix?: string;
  /** Longest wait for a subscription delivery. Default 5000 ms. */
  timeoutMs?: number;
}

export interface ContractContext {
  readonly options: Required<EventStoreContractOptions>;
  /** The store of the current test (a fresh one per test). */
  store(): EventStore;
  /** A stream name unique to this test; `mine()` keeps only events of such streams. */
  stream(label: string): string;
  mine(events: StoredEvent[]): StoredEvent[];
  /** Head position before the test wrote anything (null on an empty store). */
  base(): string | null;
}

/** A new event with a fresh uuid (KurrentDB requires uuids). */
export function newEvent(type = 'Tested', data: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}): NewEvent {
  return { id: randomUUID(), type, data, metadata };
}

export function newEvents(count: number, type = 'Tested'): NewEvent[] {
  return Array.from({ length: count }, (_, i) => newEvent(type, { n: i }));
}

/** Registers the per-test store lifecycle in the enclosing describe and returns its accessors. */
export function useEventStore(factory: EventStoreFactory, options: EventStoreContractOptions = {}): ContractContext {
  const resolved: Required<EventStoreContractOptions> = {
    sharedLog: options.sharedLog ?? false,
    rejectsIdsFromOtherStreams: options.rejectsIdsFromOtherStreams ?? true,
    dedupsRetryAtCurrentRevision: options.dedupsRetryAtCurrentRevision ?? true,
    streamPrefix: options.streamPrefix ?? 'contract-',
    timeoutMs: options.timeoutMs ?? 5_000,
  };
  let current: { store: EventStore; cleanup: () => Promise<void> } | null = null;
  let ours = new Set<string>();
  let head: string | null = null;

  beforeEach(async () => {
    current = await factory();
    ours = new Set();
    head = await current.store.headPosition();
  });
  afterEach(async () => {
    const done = current;
    current = null;
    await done?.cleanup();
  });

  return {
    options: resolved,
    store() {
      if (!current) throw new Error('no store: called outside a test');
      return current.store;
    },
    stream(label) {
      const name = `${resolved.streamPrefix}${label}-${randomUUID()}`;
      ours.add(name);
      return name;
    },
    mine: (events) => events.filter((e) => ours.has(e.stream)),
    base: () => head,
  };
}
