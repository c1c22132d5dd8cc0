/**
 * The event store port. Streams are per entity ("node-<id>", "stack-<id>").
 * Revisions count a stream's events from 0. Positions are global, opaque to
 * callers, but totally ordered: compare them with `comparePositions`.
 */

/** `no_stream`: the stream must not exist; `any`: no check; a number: the last revision must equal it. */
export type ExpectedRevision = 'no_stream' | 'any' | number;

export interface NewEvent {
  /** Unique id (uuid). Appending an event id that is already stored in the stream is a no-op (dedup). */
  id: string;
  type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

export interface StoredEvent extends NewEvent {
  stream: string;
  revision: number;
  /** Global position, a decimal string of a non-negative integer. */
  position: string;
  /** ISO-8601 time the event was recorded (from the appender's clock). */
  time: string;
}

export interface AppendResult {
  /** Revision of the last event of the stream after the append. */
  revision: number;
  /** Position of the last appended event. */
  position: string;
  events: StoredEvent[];
}

export interface ReadStreamOptions {
  fromRevision?: number;
  /** Inclusive upper bound. */
  toRevision?: number;
  limit?: number;
}

export interface ReadAllOptions {
  /** Exclusive: return events strictly after this position. Omit for the beginning. */
  after?: string;
  limit?: number;
}

export interface Subscription {
  close(): Promise<void>;
}

export interface EventStore {
  /** Appends atomically; throws ConcurrencyError (src/domain/errors) when `expected` does not hold. */
  append(stream: string, events: NewEvent[], expected: ExpectedRevision, time?: string): Promise<AppendResult>;
  /** Events of one stream in revision order; [] for an unknown stream. */
  readStream(stream: string, options?: ReadStreamOptions): Promise<StoredEvent[]>;
  /** Last revision of a stream, or null if it does not exist. */
  streamRevision(stream: string): Promise<number | null>;
  /** Events of all streams in global order. */
  readAll(options?: ReadAllOptions): Promise<StoredEvent[]>;
  /** Position of the newest event, or null when the store is empty. */
  headPosition(): Promise<string | null>;
  /**
   * Catch-up subscription: delivers every event after `after` (or from the beginning) in global
   * order, then live events, one batch at a time (the next batch waits for the handler's promise).
   */
  subscribeAll(after: string | null, handler: (events: StoredEvent[]) => Promise<void> | void): Subscription;
  close(): Promise<void>;
}

export function comparePositions(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
