/**
 * Append rules every event store adapter applies the same way: expected-revision checks, batch
 * validation and the outcome of an event-id dedup lookup.
 */
import type { ExpectedRevision, NewEvent, StoredEvent, AppendResult } from '../../ports/event-store.js';

/** True when `expected` holds for a stream whose last revision is `current` (null: no stream). */
export function expectedHolds(expected: ExpectedRevision, current: number | null): boolean {
  if (expected === 'any') return true;
  if (expected === 'no_stream') return current === null;
  return current === expected;
}

/** Rejects malformed `expected` values and batches that repeat an event id (never a valid retry). */
export function validateAppend(stream: string, events: NewEvent[], expected: ExpectedRevision): void {
  if (typeof stream !== 'string' || stream.length === 0) throw new TypeError('stream must be a non-empty string');
  if (expected !== 'any' && expected !== 'no_stream' && !(Number.isInteger(expected) && expected >= 0)) {
    throw new TypeError(`expected revision must be 'any', 'no_stream' or a non-negative integer, got ${String(expected)}`);
  }
  if (events.length > 1 && new Set(events.map((e) => e.id)).size !== events.length) {
    throw new Error(`Append to ${stream}: the batch contains the same event id twice`);
  }
}

/**
 * Decides what a batch whose ids may already be stored means. `found[i]` is the stored event with
 * `events[i].id`, or undefined.
 * - none stored: null (a new append; the caller goes on).
 * - all stored in this stream: the original result (an idempotent retry, whatever `expected` says).
 * - otherwise: a plain Error, not a ConcurrencyError, because reloading and retrying the same ids
 *   can never succeed: an id stored in another stream, or a batch only partly stored.
 */
export function resolveDuplicates(stream: string, found: (StoredEvent | undefined)[]): AppendResult | null {
  if (found.every((e) => e === undefined)) return null;
  const elsewhere = found.find((e) => e !== undefined && e.stream !== stream);
  if (elsewhere) {
    throw new Error(
      `Append to ${stream}: event id ${elsewhere.id} is already stored in stream ${elsewhere.stream}; event ids must be unique across the store`,
    );
  }
  if (found.some((e) => e === undefined)) {
    throw new Error(`Append to ${stream}: the batch is partly stored already (same ids, different batch); not a retry`);
  }
  const stored = found as StoredEvent[];
  const last = stored.reduce((a, b) => (b.revision > a.revision ? b : a));
  return { revision: last.revision, position: last.position, events: stored };
}

/** ISO time of an append: the caller's (its clock port) or now. */
export function appendTime(time: string | undefined): string {
  return time ?? new Date().toISOString();
}
