/**
 * SQLite event store (better-sqlite3): the embedded default. One row per event; the INTEGER
 * PRIMARY KEY is the global position. Several processes may share the file (WAL): each append is
 * one BEGIN IMMEDIATE transaction, and subscriptions poll to see other processes' appends.
 */
import type Database from 'better-sqlite3';
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

export interface SqliteEventStoreOptions extends SubscriptionRetryOptions {
  /** Idle subscriptions re-read this often to see appends made by other processes. Default 1000. */
  pollIntervalMs?: number;
  /** Largest batch handed to a subscription handler. Default 500. */
  batchSize?: number;
}

// AUTOINCREMENT: a position is never reused, even after the newest rows were deleted by hand.
// UNIQUE(stream, revision) is also the index behind every per-stream lookup.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position INTEGER PRIMARY KEY AUTOINCREMENT,
  id       TEXT    NOT NULL UNIQUE,
  stream   TEXT    NOT NULL,
  revision INTEGER NOT NULL,
  type     TEXT    NOT NULL,
  data     TEXT    NOT NULL,
  metadata TEXT    NOT NULL,
  time     TEXT    NOT NULL,
  UNIQUE (stream, revision)
);`;

interface Row {
  position: number;
  id: string;
  stream: string;
  revision: number;
  type: string;
  data: string;
  metadata: string;
  time: string;
}

const toEvent = (r: Row): StoredEvent => ({
  id: r.id,
  stream: r.stream,
  revision: r.revision,
  type: r.type,
  data: JSON.parse(r.data) as StoredEvent['data'],
  metadata: JSON.parse(r.metadata) as StoredEvent['metadata'],
  position: String(r.position),
  time: r.time,
});

/** SQLite reads LIMIT -1 as "no limit"; a negative limit from a caller means none, not all. */
const sqlLimit = (limit: number | undefined): number => (limit === undefined ? -1 : Math.max(0, Math.floor(limit)));

/** Thrown inside the append transaction to roll it back when `expected` does not hold. */
class ExpectedMismatch {
  constructor(readonly current: number | null) {}
}

const isUniqueViolation = (error: unknown, columns: string): boolean =>
  error instanceof Error &&
  (error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE' &&
  error.message.includes(columns);

function prepareStatements(db: Database.Database) {
  return {
    lastRevision: db.prepare<[string], number>('SELECT revision FROM events WHERE stream = ? ORDER BY revision DESC LIMIT 1').pluck(),
    last: db.prepare<[string], Pick<Row, 'revision' | 'position'>>(
      'SELECT revision, position FROM events WHERE stream = ? ORDER BY revision DESC LIMIT 1',
    ),
    insert: db.prepare<[string, string, number, string, string, string, string]>(
      'INSERT INTO events (id, stream, revision, type, data, metadata, time) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    byId: db.prepare<[string], Row>('SELECT * FROM events WHERE id = ?'),
    range: db.prepare<[string, number, number, number], Row>(
      'SELECT * FROM events WHERE stream = ? AND revision BETWEEN ? AND ? ORDER BY revision LIMIT ?',
    ),
    after: db.prepare<[number, number], Row>('SELECT * FROM events WHERE position > ? ORDER BY position LIMIT ?'),
    head: db.prepare<[], number | null>('SELECT MAX(position) FROM events').pluck(),
  };
}

/**
 * Creates the store on a connection opened by the caller (see `openSqlite`); creates the schema if
 * missing. `close()` stops this store's subscriptions but leaves the connection open (the caller owns it).
 */
export function createSqliteEventStore(db: Database.Database, options: SqliteEventStoreOptions = {}): EventStore {
  db.exec(SCHEMA);
  const sql = prepareStatements(db);
  const subscriptions = new Set<PullSubscription>();
  const policy = retryPolicy(options);
  let closed = false;

  const assertOpen = (): void => {
    if (closed) throw new Error('The event store is closed');
  };

  // The hot path: one indexed lookup and one INSERT per event; the caller's objects are returned
  // as they are, so nothing is parsed back. IMMEDIATE takes the write lock up front, so two
  // processes never deadlock upgrading a read lock, and the revision read cannot go stale.
  const insertBatch = db
    .transaction((stream: string, events: NewEvent[], expected: ExpectedRevision, time: string): StoredEvent[] => {
      const current = sql.lastRevision.get(stream) ?? null;
      if (!expectedHolds(expected, current)) throw new ExpectedMismatch(current);
      let revision = current ?? -1;
      return events.map((e) => {
        revision++;
        const { lastInsertRowid } = sql.insert.run(e.id, stream, revision, e.type, JSON.stringify(e.data), JSON.stringify(e.metadata), time);
        return { id: e.id, stream, revision, type: e.type, data: e.data, metadata: e.metadata, position: String(lastInsertRowid), time };
      });
    })
    .immediate;

  /** The batch was rolled back: an idempotent retry, a clear Error, or a ConcurrencyError. */
  const explainFailure = (stream: string, events: NewEvent[], expected: ExpectedRevision, error: unknown): AppendResult => {
    const mismatch = error instanceof ExpectedMismatch;
    // Anything else (SQLITE_BUSY, disk full...) is not ours to reinterpret.
    if (!mismatch && !isUniqueViolation(error, 'events.')) throw error;
    const retried = resolveDuplicates(stream, events.map((e) => sql.byId.get(e.id)).map((r) => (r ? toEvent(r) : undefined)));
    if (retried) return retried;
    if (mismatch) throw new ConcurrencyError(stream, expected, error.current);
    // Only another connection writing the same revision in between could do this; report it as the conflict it is.
    if (isUniqueViolation(error, 'events.stream, events.revision')) {
      throw new ConcurrencyError(stream, expected, sql.lastRevision.get(stream) ?? null);
    }
    throw error;
  };

  const append = async (stream: string, events: NewEvent[], expected: ExpectedRevision, time?: string): Promise<AppendResult> => {
    assertOpen();
    validateAppend(stream, events, expected);
    if (events.length === 0) {
      const last = sql.last.get(stream);
      return { revision: last ? last.revision : -1, position: last ? String(last.position) : '0', events: [] };
    }
    let stored: StoredEvent[];
    try {
      stored = insertBatch(stream, events, expected, appendTime(time));
    } catch (error) {
      return explainFailure(stream, events, expected, error);
    }
    for (const s of subscriptions) s.wake();
    const last = stored[stored.length - 1];
    return { revision: last.revision, position: last.position, events: stored };
  };

  const readAfter = (after: string | null | undefined, limit: number | undefined): StoredEvent[] =>
    sql.after.all(after == null ? 0 : Number(BigInt(after)), sqlLimit(limit)).map(toEvent);

  const readStream = async (stream: string, o: ReadStreamOptions = {}): Promise<StoredEvent[]> => {
    assertOpen();
    const to = o.toRevision ?? Number.MAX_SAFE_INTEGER;
    return sql.range.all(stream, o.fromRevision ?? 0, to, sqlLimit(o.limit)).map(toEvent);
  };

  const subscribeAll = (after: string | null, handler: SubscriptionHandler): Subscription => {
    assertOpen();
    const subscription = startPullSubscription({
      ...policy,
      after,
      handler,
      batchSize: options.batchSize ?? 500,
      pollIntervalMs: options.pollIntervalMs ?? 1_000,
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
      return sql.lastRevision.get(stream) ?? null;
    },
    async readAll(o: ReadAllOptions = {}) {
      assertOpen();
      return readAfter(o.after, o.limit);
    },
    async headPosition() {
      assertOpen();
      const head = sql.head.get();
      return head == null ? null : String(head);
    },
    subscribeAll,
    async close() {
      closed = true;
      await Promise.all([...subscriptions].map((s) => s.close()));
      subscriptions.clear();
    },
  };
}
