/**
 * SQLite event store (better-sqlite3): the embedded default. One row per event; the INTEGER
 * PRIMARY KEY is the global position. Several processes may share the file (WAL): the appends of
 * one event-loop turn share one BEGIN IMMEDIATE transaction (group commit, see append-group.ts), and subscriptions see other processes' appends through a cheap
 * `PRAGMA data_version` check (every 50 ms) backed by a slower re-read (every second).
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
import { AppendGroup, RecentEvents, type AppendOutcome, type QueuedAppend } from './append-group.js';
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
  /**
   * While a subscription is open, `PRAGMA data_version` is checked this often and every
   * subscription is woken when another connection (process) committed: appends of other processes
   * are seen within this bound at the cost of one pragma per tick. 0 disables it. Default 50.
   */
  watchIntervalMs?: number;
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
  // as they are, so nothing is parsed back.
  const insertOne = (stream: string, events: NewEvent[], expected: ExpectedRevision, time: string): StoredEvent[] => {
    const current = sql.lastRevision.get(stream) ?? null;
    if (!expectedHolds(expected, current)) throw new ExpectedMismatch(current);
    let revision = current ?? -1;
    return events.map((e) => {
      revision++;
      const { lastInsertRowid } = sql.insert.run(e.id, stream, revision, e.type, JSON.stringify(e.data), JSON.stringify(e.metadata), time);
      return { id: e.id, stream, revision, type: e.type, data: e.data, metadata: e.metadata, position: String(lastInsertRowid), time };
    });
  };
  // Nested in the group's transaction this is a SAVEPOINT: a failed append rolls back only itself.
  const appendInGroup = db.transaction(insertOne);

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

  // Group commit: the appends issued in one event-loop turn share one write transaction (one
  // COMMIT, one WAL sync point), flushed from setImmediate. Each append still checks its expected
  // revision inside it and fails alone (its savepoint is rolled back); a caller's promise settles
  // only after the COMMIT, so nothing is acknowledged before it is durable. IMMEDIATE takes the
  // write lock up front, so two processes never deadlock upgrading a read lock.
  const group = new AppendGroup();
  const recent = new RecentEvents();
  const commitGroup = db
    .transaction((pending: QueuedAppend[]): AppendOutcome[] =>
      pending.map((p) => {
        try {
          return { stored: appendInGroup(p.stream, p.events, p.expected, p.time) };
        } catch (error) {
          try {
            return { result: explainFailure(p.stream, p.events, p.expected, error) };
          } catch (failure) {
            if (failure === error && !(error instanceof ExpectedMismatch) && !isUniqueViolation(error, 'events.')) throw error; // I/O: the whole group fails
            return { failure };
          }
        }
      }),
    )
    .immediate;

  const flush = (): void => {
    const pending = group.take();
    let outcomes: AppendOutcome[];
    try {
      outcomes = commitGroup(pending);
    } catch (error) {
      for (const p of pending) p.reject(error); // rolled back as a whole (busy past the timeout, disk full...)
      return;
    }
    let stored = false;
    outcomes.forEach((o, i) => {
      const p = pending[i]!;
      if (o.failure !== undefined) return p.reject(o.failure);
      if (o.result) return p.resolve(o.result);
      const events = o.stored!;
      stored = true;
      recent.add(events);
      const last = events[events.length - 1]!;
      p.resolve({ revision: last.revision, position: last.position, events });
    });
    if (stored) for (const s of subscriptions) s.wake();
  };

  const append = async (stream: string, events: NewEvent[], expected: ExpectedRevision, time?: string): Promise<AppendResult> => {
    assertOpen();
    validateAppend(stream, events, expected);
    if (events.length === 0) {
      const last = sql.last.get(stream);
      return { revision: last ? last.revision : -1, position: last ? String(last.position) : '0', events: [] };
    }
    return group.enqueue({ stream, events, expected, time: appendTime(time) }, flush);
  };

  const readAfter = (after: string | null | undefined, limit: number | undefined): StoredEvent[] =>
    sql.after.all(after == null ? 0 : Number(BigInt(after)), sqlLimit(limit)).map(toEvent);

  const readStream = async (stream: string, o: ReadStreamOptions = {}): Promise<StoredEvent[]> => {
    assertOpen();
    const to = o.toRevision ?? Number.MAX_SAFE_INTEGER;
    return sql.range.all(stream, o.fromRevision ?? 0, to, sqlLimit(o.limit)).map(toEvent);
  };

  // Other processes' commits: data_version changes when another connection committed to the file
  // (never for this connection's own appends, which wake the subscriptions directly).
  const watchIntervalMs = options.watchIntervalMs ?? 50;
  const dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
  let watcher: NodeJS.Timeout | null = null;
  let lastVersion = 0;
  const watch = (): void => {
    if (watcher || watchIntervalMs <= 0 || db.memory) return;
    lastVersion = dataVersion.get()!;
    watcher = setInterval(() => {
      if (subscriptions.size === 0 || !db.open) return unwatch();
      const v = dataVersion.get()!;
      if (v === lastVersion) return;
      lastVersion = v;
      for (const s of subscriptions) s.wake();
    }, watchIntervalMs);
    watcher.unref(); // the subscriptions' own loops are what keeps a process alive
  };
  const unwatch = (): void => {
    if (watcher) clearInterval(watcher);
    watcher = null;
  };

  const subscribeAll = (after: string | null, handler: SubscriptionHandler): Subscription => {
    assertOpen();
    const subscription = startPullSubscription({
      ...policy,
      after,
      handler,
      batchSize: options.batchSize ?? 500,
      pollIntervalMs: options.pollIntervalMs ?? 1_000,
      readAfter: async (cursor, limit) => recent.after(cursor, limit) ?? readAfter(cursor, limit),
      onClosed: () => {
        subscriptions.delete(subscription);
        if (subscriptions.size === 0) unwatch();
      },
    });
    subscriptions.add(subscription);
    watch();
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
      unwatch();
      await Promise.all([...subscriptions].map((s) => s.close()));
      subscriptions.clear();
    },
  };
}
