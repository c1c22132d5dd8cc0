/**
 * In-memory event store: a first-class adapter held to the same contract as SQLite and KurrentDB,
 * used by the fast unit tests. Data and metadata are kept as JSON text, so what comes back has
 * exactly the shape a durable adapter would return (no shared references, no Dates, no undefined).
 */
import { ConcurrencyError } from '../../domain/errors.js';
import type {
  AppendResult,
  EventStore,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  StoredEvent,
  Subscription,
} from '../../ports/event-store.js';
import { appendTime, expectedHolds, resolveDuplicates, validateAppend } from '../shared/append-rules.js';
import {
  retryPolicy,
  startPullSubscription,
  type PullSubscription,
  type SubscriptionHandler,
  type SubscriptionRetryOptions,
} from '../shared/catch-up-subscription.js';

export interface MemoryEventStoreOptions extends SubscriptionRetryOptions {
  /** Largest batch handed to a subscription handler. Default 500. */
  batchSize?: number;
}

/** One stored event with its payload still serialized. Position = index in the log + 1. */
interface Row {
  id: string;
  stream: string;
  revision: number;
  type: string;
  data: string;
  metadata: string;
  time: string;
  position: string;
}

const toEvent = (r: Row): StoredEvent => ({
  id: r.id,
  stream: r.stream,
  revision: r.revision,
  type: r.type,
  data: JSON.parse(r.data) as StoredEvent['data'],
  metadata: JSON.parse(r.metadata) as StoredEvent['metadata'],
  position: r.position,
  time: r.time,
});

/** Index in the log of the first event strictly after `after` (positions are 1-based indexes). */
const startIndex = (after: string | null | undefined): number => (after == null ? 0 : Number(BigInt(after)));

/**
 * Creates an empty in-memory store. Appends are atomic because their body never awaits.
 * Subscribers are woken right after each append.
 */
export function createMemoryEventStore(options: MemoryEventStoreOptions = {}): EventStore {
  const log: Row[] = [];
  const streams = new Map<string, Row[]>();
  const byId = new Map<string, Row>();
  const subscriptions = new Set<PullSubscription>();
  const policy = retryPolicy(options);
  const batchSize = options.batchSize ?? 500;
  let closed = false;

  const assertOpen = (): void => {
    if (closed) throw new Error('The event store is closed');
  };

  const readAfter = (after: string | null | undefined, limit: number | undefined): StoredEvent[] => {
    const from = startIndex(after);
    const to = limit === undefined ? log.length : Math.min(log.length, from + limit);
    return from >= to ? [] : log.slice(from, to).map(toEvent);
  };

  const store = (stream: string, events: NewEvent[], first: number, time: string): StoredEvent[] => {
    const records = streams.get(stream) ?? [];
    streams.set(stream, records);
    return events.map((e, i) => {
      const record: Row = {
        id: e.id,
        stream,
        revision: first + i,
        type: e.type,
        data: JSON.stringify(e.data),
        metadata: JSON.stringify(e.metadata),
        time,
        position: String(log.length + 1),
      };
      log.push(record);
      records.push(record);
      byId.set(record.id, record);
      return toEvent(record);
    });
  };

  const emptyAppend = (stream: string): AppendResult => {
    const last = streams.get(stream)?.at(-1);
    return { revision: last ? last.revision : -1, position: last ? last.position : '0', events: [] };
  };

  const append = async (stream: string, events: NewEvent[], expected: ExpectedRevision, time?: string): Promise<AppendResult> => {
    assertOpen();
    validateAppend(stream, events, expected);
    if (events.length === 0) return emptyAppend(stream);
    const found = events.map((e) => byId.get(e.id));
    const retried = resolveDuplicates(stream, found.map((r) => (r ? toEvent(r) : undefined)));
    if (retried) return retried;
    const current = streams.get(stream)?.at(-1)?.revision ?? null;
    if (!expectedHolds(expected, current)) throw new ConcurrencyError(stream, expected, current);
    const stored = store(stream, events, (current ?? -1) + 1, appendTime(time));
    for (const s of subscriptions) s.wake();
    const last = stored[stored.length - 1];
    return { revision: last.revision, position: last.position, events: stored };
  };

  const readStream = async (stream: string, o: ReadStreamOptions = {}): Promise<StoredEvent[]> => {
    assertOpen();
    const records = streams.get(stream) ?? [];
    const from = Math.max(0, o.fromRevision ?? 0);
    const to = Math.min(records.length - 1, o.toRevision ?? Number.MAX_SAFE_INTEGER);
    const end = o.limit === undefined ? to + 1 : Math.min(to + 1, from + Math.max(0, o.limit));
    return from >= end ? [] : records.slice(from, end).map(toEvent);
  };

  const subscribeAll = (after: string | null, handler: SubscriptionHandler): Subscription => {
    assertOpen();
    const subscription = startPullSubscription({
      ...policy,
      after,
      handler,
      batchSize,
      readAfter: async (cursor, limit) => readAfter(cursor, limit),
      onClosed: () => subscriptions.delete(subscription),
    });
    subscriptions.add(subscription);
    return subscription;
  };

  return {
    append,
    readStream,
    async streamRevision(stream) {
      assertOpen();
      return streams.get(stream)?.at(-1)?.revision ?? null;
    },
    async readAll(o: ReadAllOptions = {}) {
      assertOpen();
      return readAfter(o.after, o.limit);
    },
    async headPosition() {
      assertOpen();
      return log.at(-1)?.position ?? null;
    },
    subscribeAll,
    async close() {
      closed = true;
      await Promise.all([...subscriptions].map((s) => s.close()));
      subscriptions.clear();
    },
  };
}
