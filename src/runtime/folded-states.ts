/**
 * One fold, not two: the actor's state right after each event it appended, keyed by the stored
 * event object the append returned. The SQLite store hands those same objects to in-process
 * subscribers (`RecentEvents`), so the projector takes the actor's state instead of folding the
 * event again. Events read back from the table (another process appended them, a restart, the
 * start-up catch-up) are other objects with no entry here: they are folded. Entries go with
 * their events (a WeakMap). States are never mutated (every fold copies), so sharing is safe.
 */
import type { StoredEvent } from '../ports/event-store.js';

const after = new WeakMap<StoredEvent, unknown>();

/** Records `state` as the fold of the event's stream up to and including `event`. */
export function handOverFolded(event: StoredEvent, state: unknown): void {
  after.set(event, state);
}

/**
 * The actor's state after `event`, if this process's actor appended that very object. The caller
 * uses it only when its own copy is at the revision before (`event.revision - 1`): both are then
 * folds of the same prefix of an immutable stream.
 */
export function foldedAfter<S>(event: StoredEvent): S | undefined {
  return after.get(event) as S | undefined;
}
