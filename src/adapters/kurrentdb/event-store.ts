/**
 * KurrentDB (EventStoreDB) event store, the distributed adapter. Positions are commit positions as
 * decimal strings: every event this adapter writes is its own implicit transaction record, so its
 * commit position equals its prepare position and is unique and increasing (events written with
 * legacy explicit transactions would share one commit position; nothing here writes those).
 * The append `time` travels inside the stored metadata as `{ time, metadata }` and is unwrapped on read.
 */
import {
  ANY,
  BACKWARDS,
  END,
  KurrentDBClient,
  NO_STREAM,
  START,
  StreamNotFoundError,
  WrongExpectedVersionError,
  excludeSystemEvents,
  jsonEvent,
  type AllStreamResolvedEvent,
  type AppendStreamState,
  type ReadPosition,
  type ResolvedEvent,
} from '@kurrent/kurrentdb-client';
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
import { appendTime, resolveDuplicates, validateAppend } from '../shared/append-rules.js';
import { cancellableDelay, deliverWithRetry, retryPolicy, type SubscriptionHandler, type SubscriptionRetryOptions } from '../shared/catch-up-subscription.js';

export type KurrentEventStoreOptions = SubscriptionRetryOptions;

/** The fields of a recorded event this adapter reads (JSON and binary events alike). */
interface Recorded {
  streamId: string;
  id: string;
  revision: bigint;
  type: string;
  created: Date;
  data: unknown;
  metadata: unknown;
  position?: { commit: bigint; prepare: bigint };
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);

/** Foreign (non-JSON-object) payloads are wrapped rather than dropped, so readAll never throws on them. */
const asRecord = (v: unknown): Record<string, unknown> =>
  isPlainObject(v) ? v : { value: v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v };

function unwrapMetadata(raw: unknown, created: Date): { time: string; metadata: Record<string, unknown> } {
  if (isPlainObject(raw) && typeof raw.time === 'string' && isPlainObject(raw.metadata)) {
    return { time: raw.time, metadata: raw.metadata };
  }
  return { time: created.toISOString(), metadata: raw === undefined ? {} : asRecord(raw) };
}

function toStored(e: Recorded, commitPosition: bigint | undefined): StoredEvent {
  const position = e.position?.commit ?? commitPosition;
  // Servers before 22.6 do not return positions on stream reads; the port needs them everywhere.
  if (position === undefined) throw new Error(`KurrentDB returned event ${e.id} without a position (server >= 22.6 required)`);
  return {
    id: e.id,
    stream: e.streamId,
    revision: Number(e.revision),
    type: e.type,
    data: asRecord(e.data),
    ...unwrapMetadata(e.metadata, e.created),
    position: position.toString(),
  };
}

const fromResolved = (r: ResolvedEvent | AllStreamResolvedEvent): StoredEvent | null =>
  r.event ? toStored(r.event as Recorded, r.commitPosition) : null;

const toStreamState = (expected: ExpectedRevision): AppendStreamState =>
  expected === 'any' ? ANY : expected === 'no_stream' ? NO_STREAM : BigInt(expected);

/** Commit position = prepare position for the events this adapter writes (see the header). */
const toReadPosition = (position: string | null | undefined): ReadPosition =>
  position == null ? START : { commit: BigInt(position), prepare: BigInt(position) };

const actualRevision = (state: unknown): number | null | undefined =>
  state === NO_STREAM ? null : typeof state === 'bigint' && state >= 0n ? Number(state) : undefined;

/**
 * Creates a store on a KurrentDB connection string (`kurrentdb://host:2113?tls=false`). The client
 * connects lazily; `close()` ends subscriptions and disposes it.
 */
export function createKurrentEventStore(connectionString: string, options: KurrentEventStoreOptions = {}): EventStore {
  const client = KurrentDBClient.connectionString(connectionString);
  const policy = retryPolicy(options);
  const closers = new Set<() => Promise<void>>();
  let closing: Promise<void> | null = null;

  const readStreamRaw = async (stream: string, read: Parameters<typeof client.readStream>[1]): Promise<StoredEvent[]> => {
    const events: StoredEvent[] = [];
    try {
      for await (const resolved of client.readStream(stream, read)) {
        const event = fromResolved(resolved);
        if (event) events.push(event);
      }
    } catch (error) {
      if (error instanceof StreamNotFoundError) return [];
      throw error;
    }
    return events;
  };

  const lastEvent = async (stream: string): Promise<StoredEvent | undefined> =>
    (await readStreamRaw(stream, { direction: BACKWARDS, fromRevision: END, maxCount: 1 }))[0];

  /** The stored events carrying the batch's ids, aligned with `events` (a whole-stream scan: conflict path only). */
  const findByIds = async (stream: string, events: NewEvent[]): Promise<(StoredEvent | undefined)[]> => {
    const byId = new Map((await readStreamRaw(stream, {})).map((e) => [e.id, e]));
    return events.map((e) => byId.get(e.id));
  };

  /** Reads back what was just written, for per-event positions (the append answer has one position). */
  const readBack = async (stream: string, events: NewEvent[], lastRevision: bigint): Promise<AppendResult> => {
    const first = lastRevision - BigInt(events.length - 1);
    const stored = first >= 0n ? await readStreamRaw(stream, { fromRevision: first, maxCount: events.length }) : [];
    const same = stored.length === events.length && stored.every((e, i) => e.id === events[i].id);
    const result = same ? { revision: stored[stored.length - 1].revision, position: stored[stored.length - 1].position, events: stored } : null;
    // The server may have deduplicated the batch itself and answered with another revision.
    const found = result ?? resolveDuplicates(stream, await findByIds(stream, events));
    if (!found) throw new Error(`Append to ${stream} succeeded but its events cannot be read back`);
    return found;
  };

  /** `expected` did not hold: an idempotent retry returns the original result, anything else conflicts. */
  const conflict = async (stream: string, events: NewEvent[], expected: ExpectedRevision, reported: unknown): Promise<AppendResult> => {
    const retried = resolveDuplicates(stream, await findByIds(stream, events));
    if (retried) return retried;
    const actual = actualRevision(reported);
    throw new ConcurrencyError(stream, expected, actual !== undefined ? actual : ((await lastEvent(stream))?.revision ?? null));
  };

  const append = async (stream: string, events: NewEvent[], expected: ExpectedRevision, time?: string): Promise<AppendResult> => {
    validateAppend(stream, events, expected);
    if (events.length === 0) {
      const last = await lastEvent(stream);
      return { revision: last ? last.revision : -1, position: last ? last.position : '0', events: [] };
    }
    // With ANY the server's own dedup is best effort (cache based), so look for the ids first.
    if (expected === 'any') {
      const retried = resolveDuplicates(stream, await findByIds(stream, events));
      if (retried) return retried;
    }
    const at = appendTime(time);
    const data = events.map((e) => jsonEvent({ id: e.id, type: e.type, data: e.data, metadata: { time: at, metadata: e.metadata } }));
    try {
      const result = await client.appendToStream(stream, data, { streamState: toStreamState(expected) });
      // success is false only with throwOnAppendFailure=false in the connection string; its
      // revision is unreliable in this client version, so the conflict path re-reads it.
      if (!result.success) return await conflict(stream, events, expected, undefined);
      return await readBack(stream, events, result.nextExpectedRevision);
    } catch (error) {
      if (error instanceof WrongExpectedVersionError) return conflict(stream, events, expected, error.actualState);
      throw error;
    }
  };

  const readStream = async (stream: string, o: ReadStreamOptions = {}): Promise<StoredEvent[]> => {
    const from = Math.max(0, o.fromRevision ?? 0);
    const span = o.toRevision === undefined ? Number.MAX_SAFE_INTEGER : o.toRevision - from + 1;
    const maxCount = Math.min(span, o.limit ?? Number.MAX_SAFE_INTEGER);
    if (maxCount <= 0) return [];
    return readStreamRaw(stream, { fromRevision: BigInt(from), maxCount });
  };

  const readAll = async (o: ReadAllOptions = {}): Promise<StoredEvent[]> => {
    const limit = o.limit ?? Number.MAX_SAFE_INTEGER;
    if (limit <= 0) return [];
    const after = o.after == null ? null : BigInt(o.after);
    const events: StoredEvent[] = [];
    // fromPosition is inclusive on the server, hence one extra event and the filter below.
    const maxCount = after === null ? limit : Math.min(limit + 1, Number.MAX_SAFE_INTEGER);
    for await (const resolved of client.readAll({ fromPosition: toReadPosition(o.after), maxCount, filter: excludeSystemEvents() })) {
      const event = fromResolved(resolved);
      if (!event || (after !== null && BigInt(event.position) <= after)) continue;
      events.push(event);
      if (events.length >= limit) break;
    }
    return events;
  };

  const headPosition = async (): Promise<string | null> => {
    for await (const resolved of client.readAll({ direction: BACKWARDS, fromPosition: END, maxCount: 1, filter: excludeSystemEvents() })) {
      const event = fromResolved(resolved);
      if (event) return event.position;
    }
    return null;
  };

  const subscribeAll = (after: string | null, handler: SubscriptionHandler): Subscription => {
    const subscription = followAll(client, after, handler, policy);
    const close = async (): Promise<void> => {
      closers.delete(close);
      await subscription.close();
    };
    closers.add(close);
    return { close };
  };

  return {
    append,
    readStream,
    async streamRevision(stream) {
      return (await lastEvent(stream))?.revision ?? null;
    },
    readAll,
    headPosition,
    subscribeAll,
    close() {
      // Idempotent: the client must be disposed once, whoever calls close first.
      closing ??= (async () => {
        await Promise.all([...closers].map((close) => close()));
        await client.dispose();
      })();
      return closing;
    },
  };
}

/**
 * A catch-up subscription to $all (system events excluded), one event per batch. The async
 * iterator pulls the next event only after the handler settled, which is the backpressure.
 * A dropped subscription is re-opened from the last delivered position after the backoff.
 */
function followAll(
  client: KurrentDBClient,
  after: string | null,
  handler: SubscriptionHandler,
  policy: Required<SubscriptionRetryOptions>,
): Subscription {
  let closed = false;
  let cursor = after;
  let current: { unsubscribe(): Promise<void> } | null = null;
  let waiting: { cancel: () => void } | null = null;
  const isClosed = (): boolean => closed;

  /** Follows until the subscription drops or closes; advances `cursor` after each accepted event. */
  const follow = async (): Promise<void> => {
    const subscription = client.subscribeToAll({ fromPosition: toReadPosition(cursor), filter: excludeSystemEvents() });
    current = subscription;
    try {
      for await (const resolved of subscription as AsyncIterable<AllStreamResolvedEvent>) {
        const event = fromResolved(resolved);
        if (closed) return;
        if (!event || (cursor !== null && BigInt(event.position) <= BigInt(cursor))) continue;
        if (!(await deliverWithRetry([event], handler, policy, isClosed, (d) => (waiting = d)))) return;
        cursor = event.position;
      }
    } finally {
      current = null;
      await subscription.unsubscribe().catch(() => undefined);
    }
  };

  const run = async (): Promise<void> => {
    for (let attempt = 1; !closed; attempt++) {
      const before = cursor;
      try {
        await follow();
        if (closed) return;
        policy.logError(`KurrentDB subscription ended after ${cursor ?? 'start'}; re-subscribing`, undefined);
      } catch (error) {
        if (closed) return;
        policy.logError(`KurrentDB subscription failed after ${cursor ?? 'start'}; re-subscribing`, error);
      }
      if (cursor !== before) attempt = 1; // it made progress: start the backoff over
      const delay = cancellableDelay(policy.retryDelayMs(attempt));
      waiting = delay;
      await delay.done;
      waiting = null;
    }
  };
  void run();

  return {
    async close() {
      closed = true;
      waiting?.cancel();
      await current?.unsubscribe().catch(() => undefined);
    },
  };
}
