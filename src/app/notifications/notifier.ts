/**
 * The notifier: follows the event log from its own checkpoint and publishes every event's public
 * envelope (secrets redacted) to the bus, in log order, one at a time: an event is published only
 * after the broker confirmed the previous one, so per-entity order holds even across failures.
 *
 * Exactly-once in the stream, at-least-once on the wire: the checkpoint (SQLite table
 * `notifier_checkpoint`) is written after each confirmed publish, so a crash re-publishes at most
 * the event whose confirmation it did not record; that re-publish carries the same Nats-Msg-Id
 * (= event id) and the stream's duplicate window drops it. A failed publish is retried (the
 * subscription retries the batch; events already confirmed are skipped by position). A lost or
 * stale checkpoint is caught up from the stream itself (see `resumePosition`), so an ephemeral
 * data directory does not re-publish the whole log beyond the duplicate window.
 */
import type Database from 'better-sqlite3';
import { comparePositions, type EventStore, type StoredEvent, type Subscription } from '../../ports/event-store.js';
import type { Bus, Notification } from '../../ports/bus.js';
import type { Logger } from '../../ports/logger.js';
import { streamName } from '../../runtime/actor-runtime.js';
import { eventEnvelope } from '../nodes/replay.js';
import { entityOf } from '../projector.js';

export interface NotifierDeps {
  store: EventStore;
  db: Database.Database;
  bus: Bus;
  /** The owner (tenant) of a node as the read model knows it, or undefined. */
  nodeOwner(id: string): string | undefined;
  /** The owner (tenant) of a stack as the read model knows it, or undefined. */
  stackOwner?(id: string): string | undefined;
  log: Logger;
  /** Checkpoint row name (one per publisher). Default 'notifications'. */
  name?: string;
}

const OWNER_CACHE_MAX = 50_000;
/** Tenant token used when an entity's owner cannot be found (never expected; visible if it happens). */
export const UNKNOWN_TENANT = '_unknown';

export function createNotifier(deps: NotifierDeps) {
  const { store, db, bus, log } = deps;
  const name = deps.name ?? 'notifications';
  db.exec('CREATE TABLE IF NOT EXISTS notifier_checkpoint (name TEXT PRIMARY KEY, position TEXT NOT NULL)');
  const read = db.prepare('SELECT position FROM notifier_checkpoint WHERE name = ?');
  const write = db.prepare('INSERT INTO notifier_checkpoint (name, position) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET position = excluded.position');
  const owners = new Map<string, string>();
  let position: string | null = (read.get(name) as { position: string } | undefined)?.position ?? null;
  let subscription: Subscription | null = null;
  let published = 0;
  let duplicates = 0;
  let lastError: string | null = null;

  const remember = (key: string, owner: string): string => {
    owners.set(key, owner);
    if (owners.size > OWNER_CACHE_MAX) owners.delete(owners.keys().next().value!);
    return owner;
  };

  /** The tenant of an event's entity: the enrolment event itself, the cache, the read model, else the stream's first event. */
  async function tenantOf(e: StoredEvent): Promise<string> {
    const { type, id } = entityOf(e.stream);
    const key = `${type}/${id}`;
    const data = e.data as { owner?: unknown };
    if (e.revision === 0 && typeof data.owner === 'string') return remember(key, data.owner);
    const cached = owners.get(key);
    if (cached !== undefined) return cached;
    const fromReadModel = type === 'node' ? deps.nodeOwner(id) : type === 'stack' ? deps.stackOwner?.(id) : undefined;
    if (fromReadModel !== undefined) return remember(key, fromReadModel);
    const [first] = await store.readStream(e.stream, { limit: 1 });
    const owner = (first?.data as { owner?: unknown } | undefined)?.owner;
    if (typeof owner === 'string') return remember(key, owner);
    log.warn({ stream: e.stream }, 'notifier: no owner found for this entity');
    return UNKNOWN_TENANT;
  }

  let generation = 0;

  async function handle(gen: number, events: StoredEvent[]): Promise<void> {
    for (const e of events) {
      if (gen !== generation) return; // stopped: a later start() resumes from the checkpoint
      if (position !== null && comparePositions(e.position, position) <= 0) continue; // confirmed before a retry
      try {
        const ack = await bus.publishEvent(eventEnvelope(e), { tenant: await tenantOf(e) });
        if (ack.duplicate) duplicates++;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
        throw err;
      }
      write.run(name, e.position);
      position = e.position;
      published++;
      lastError = null;
    }
  }

  /**
   * Where to resume: after the local checkpoint, or after the newest notification in the stream
   * when that is further (a fresh data directory, or another process published since): every
   * publisher publishes in log order without skipping, so everything up to the newest stored
   * notification is in the stream. It is trusted only if it is an event of THIS log (same id at
   * that entity revision), so a stream fed by another store never makes the notifier skip events.
   */
  async function resumePosition(): Promise<string | null> {
    let newest: Notification | null = null;
    try {
      newest = await bus.lastNotification();
    } catch (err) {
      log.warn({ err }, 'notifier: could not read the newest notification; resuming from the local checkpoint');
    }
    if (!newest) return position;
    const e = newest.envelope;
    if (position !== null && comparePositions(e.position, position) <= 0) return position;
    const [stored] = await store.readStream(streamName(e.entity_type, e.entity_id), { fromRevision: e.revision, toRevision: e.revision });
    if (stored?.id !== e.id) {
      log.warn({ event_id: e.id, sequence: newest.sequence }, 'notifier: the newest notification is not an event of this log; resuming from the local checkpoint');
      return position;
    }
    log.info({ from: position, to: e.position }, 'notifier: the stream is ahead of the local checkpoint; resuming after its newest notification');
    write.run(name, e.position);
    return e.position;
  }

  return {
    /** Starts following the log after `resumePosition()` (from the beginning when there is none). */
    async start(): Promise<void> {
      if (subscription) return;
      const gen = ++generation;
      position = await resumePosition();
      if (gen !== generation) return; // stopped meanwhile
      subscription = store.subscribeAll(position, (events) => handle(gen, events));
    },
    /** Position of the last event the broker confirmed (null before the first). */
    position: (): string | null => position,
    stats: () => ({ published, duplicates, lastError }),
    /** Stops publishing (the checkpoint stays where it is; `start` resumes from it). */
    async stop(): Promise<void> {
      const s = subscription;
      subscription = null;
      generation++;
      await s?.close();
    },
  };
}

export type Notifier = ReturnType<typeof createNotifier>;
