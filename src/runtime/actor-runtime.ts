/**
 * The actor runtime: load (snapshot + tail) → decide → append with the expected revision →
 * cache. One command at a time per entity (a mailbox per id); conflicts reload and decide
 * again, a bounded number of times. Effects are not run here: they follow the log (work
 * dispatcher, timers, callbacks), so a replay or a crash can never run one without its event.
 */
import { ConcurrencyError, IroncladError } from '../domain/errors.js';
import type { Clock, Ids } from '../ports/clock.js';
import type { EventStore, NewEvent, StoredEvent } from '../ports/event-store.js';
import type { SnapshotStore } from '../ports/snapshot-store.js';
import { handOverFolded } from './folded-states.js';

export interface EntityModel<S> {
  entityType: 'node' | 'stack';
  initial(id: string): S;
  evolve(state: S, event: StoredEvent): S;
  /** Bump when the fold changes, so older snapshots are ignored. */
  snapshotVersion: number;
}

export interface PendingEvent {
  type: string;
  data: Record<string, unknown>;
}

export interface Decision<S, T> {
  events: PendingEvent[];
  value: T;
  /** The state after the events, if the decider already folded them (saves a second fold). */
  state?: S;
}

export interface ExecuteResult<S, T> {
  value: T;
  state: S;
  appended: StoredEvent[];
  /** Position of the last appended event, or null when nothing was appended. */
  position: string | null;
}

export interface ActorRuntimeOptions<S> {
  store: EventStore;
  snapshots: SnapshotStore;
  clock: Clock;
  ids: Ids;
  model: EntityModel<S>;
  snapshotEvery?: number;
  maxCached?: number;
  idleMs?: number;
  maxRetries?: number;
  /**
   * Cluster mode: called before every decision (also after a conflict reload); a throw (e.g. this
   * process no longer holds the entity's partition lease) aborts the command before anything is appended.
   */
  guard?: (id: string) => void;
  /** Cluster mode: only these ids are kept in the cache (the others may be written by another process). Default all. */
  cacheable?: (id: string) => boolean;
}

interface Cached<S> {
  state: S;
  revision: number;
  snapshotRevision: number;
  lastUsed: number;
}

export interface ActorRuntime<S> {
  execute<T>(id: string, decide: (state: S, revision: number) => Decision<S, T>, metadata: Record<string, unknown>): Promise<ExecuteResult<S, T>>;
  /** The current state (from cache, or snapshot + tail of the stream). */
  load(id: string): Promise<{ state: S; revision: number }>;
  cachedCount(): number;
  /** Drops idle actors from memory. Returns how many were evicted. */
  evictIdle(): number;
  /** Drops the cached state of every id matching `which` (cluster: a partition this process lost or gained). */
  evict(which: (id: string) => boolean): number;
  close(): void;
}

export const streamName = (entityType: string, id: string): string => `${entityType}-${id}`;

export function createActorRuntime<S>(opts: ActorRuntimeOptions<S>): ActorRuntime<S> {
  const { store, snapshots, clock, ids, model } = opts;
  const snapshotEvery = opts.snapshotEvery ?? 100;
  const maxCached = opts.maxCached ?? 200_000;
  const idleMs = opts.idleMs ?? 10 * 60_000;
  const maxRetries = opts.maxRetries ?? 5;
  const cache = new Map<string, Cached<S>>();
  const mailboxes = new Map<string, Promise<unknown>>();
  let cancelSweep: (() => void) | null = null;

  async function loadFresh(id: string): Promise<Cached<S>> {
    const stream = streamName(model.entityType, id);
    let state = model.initial(id);
    let revision = -1;
    const snap = await snapshots.get(stream);
    if (snap && (snap.state as { v?: number }).v === model.snapshotVersion) {
      state = (snap.state as { s: S }).s;
      revision = snap.revision;
    }
    const snapshotRevision = revision;
    for (;;) {
      const tail = await store.readStream(stream, { fromRevision: revision + 1, limit: 1000 });
      for (const e of tail) state = model.evolve(state, e);
      if (tail.length > 0) revision = tail[tail.length - 1]!.revision;
      if (tail.length < 1000) break;
    }
    return { state, revision, snapshotRevision, lastUsed: clock.now() };
  }

  async function get(id: string): Promise<Cached<S>> {
    if (opts.cacheable && !opts.cacheable(id)) {
      cache.delete(id);
      return loadFresh(id);
    }
    const hit = cache.get(id);
    if (hit) {
      cache.delete(id); // re-insert: Map order is our LRU order
      cache.set(id, hit);
      hit.lastUsed = clock.now();
      return hit;
    }
    const loaded = await loadFresh(id);
    cache.set(id, loaded);
    trim();
    return loaded;
  }

  function trim(): void {
    if (cache.size <= maxCached) return;
    for (const id of cache.keys()) {
      if (cache.size <= maxCached) break;
      if (!mailboxes.has(id)) cache.delete(id);
    }
  }

  async function runOnce<T>(id: string, decide: (state: S, revision: number) => Decision<S, T>, metadata: Record<string, unknown>): Promise<ExecuteResult<S, T>> {
    const stream = streamName(model.entityType, id);
    for (let attempt = 0; ; attempt++) {
      opts.guard?.(id);
      const current = await get(id);
      const decision = decide(current.state, current.revision);
      if (decision.events.length === 0) return { value: decision.value, state: current.state, appended: [], position: null };
      const newEvents: NewEvent[] = decision.events.map((e) => ({
        id: ids.next(), type: e.type, data: e.data,
        metadata: { ...metadata, task_id: (e.data['task_id'] as string | undefined) ?? metadata['task_id'] ?? null },
      }));
      try {
        const res = await store.append(stream, newEvents, current.revision < 0 ? 'no_stream' : current.revision, new Date(clock.now()).toISOString());
        let state = current.state;
        for (const e of res.events) {
          state = model.evolve(state, e);
          handOverFolded(e, state); // the in-process projector takes it instead of folding again
        }
        const next: Cached<S> = { state, revision: res.revision, snapshotRevision: current.snapshotRevision, lastUsed: clock.now() };
        if (!opts.cacheable || opts.cacheable(id)) cache.set(id, next);
        if (res.revision - next.snapshotRevision >= snapshotEvery) {
          next.snapshotRevision = res.revision;
          await snapshots.put(stream, res.revision, { v: model.snapshotVersion, s: state });
        }
        return { value: decision.value, state, appended: res.events, position: res.position };
      } catch (err) {
        if (!(err instanceof ConcurrencyError)) throw err;
        cache.delete(id); // someone else wrote: reload and decide again
        if (attempt + 1 >= maxRetries) {
          throw new IroncladError('overloaded', `Too many concurrent writes to ${stream}; retry.`, {}, { cause: err });
        }
      }
    }
  }

  function execute<T>(id: string, decide: (state: S, revision: number) => Decision<S, T>, metadata: Record<string, unknown>): Promise<ExecuteResult<S, T>> {
    const prev = mailboxes.get(id) ?? Promise.resolve();
    const run = prev.then(() => runOnce(id, decide, metadata));
    const tail = run.catch(() => undefined);
    mailboxes.set(id, tail);
    void tail.then(() => {
      if (mailboxes.get(id) === tail) mailboxes.delete(id);
    });
    return run;
  }

  function evictIdle(): number {
    const cutoff = clock.now() - idleMs;
    let n = 0;
    for (const [id, c] of cache) {
      if (c.lastUsed <= cutoff && !mailboxes.has(id)) {
        cache.delete(id);
        n++;
      }
    }
    return n;
  }

  function scheduleSweep(): void {
    cancelSweep = clock.setTimeout(() => {
      evictIdle();
      scheduleSweep();
    }, Math.max(1000, Math.floor(idleMs / 4)));
  }
  scheduleSweep();

  return {
    execute,
    async load(id) {
      const c = await get(id);
      return { state: c.state, revision: c.revision };
    },
    cachedCount: () => cache.size,
    evictIdle,
    evict(which) {
      let n = 0;
      for (const id of [...cache.keys()]) {
        if (which(id)) {
          cache.delete(id);
          n++;
        }
      }
      return n;
    },
    close() {
      cancelSweep?.();
    },
  };
}
