import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSqliteEventStore } from '../../src/adapters/sqlite/event-store.js';
import { openSqlite } from '../../src/adapters/sqlite/open.js';
import { ConcurrencyError } from '../../src/domain/errors.js';
import type { StoredEvent } from '../../src/ports/event-store.js';
import { waitFor } from '../support/wait-for.js';
import { eventStoreContract } from './event-store.contract.js';
import { newEvent, newEvents } from './event-store.context.js';

const freshDir = (): string => mkdtempSync(join(tmpdir(), 'ironclad-events-'));

// A real file per test; a small batch size makes catch-up page, a 1 ms backoff keeps retries fast.
eventStoreContract('sqlite', async () => {
  const dir = freshDir();
  const db = openSqlite(join(dir, 'ironclad.db'));
  const store = createSqliteEventStore(db, { batchSize: 7, retryDelayMs: () => 1 });
  return {
    store,
    cleanup: async () => {
      await store.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite event store file', () => {
  let dir: string;
  const opened: Database.Database[] = [];
  const open = (options?: Parameters<typeof openSqlite>[1]): Database.Database => {
    const db = openSqlite(join(dir, 'ironclad.db'), options);
    opened.push(db);
    return db;
  };
  beforeEach(() => {
    dir = freshDir();
  });
  afterEach(() => {
    for (const db of opened.splice(0)) if (db.open) db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens with WAL, synchronous NORMAL by default or FULL on request, busy timeout and foreign keys', () => {
    const db = open();
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(1);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    expect(open({ synchronous: 'full' }).pragma('synchronous', { simple: true })).toBe(2);
  });

  it('keeps every event across closing and reopening the file', async () => {
    const first = open();
    const written = (await createSqliteEventStore(first).append('node-1', newEvents(3), 'no_stream')).events;
    first.close();
    const store = createSqliteEventStore(open());
    expect(await store.readStream('node-1')).toEqual(written);
    expect(await store.headPosition()).toBe(written[2].position);
    expect((await store.append('node-1', [newEvent()], 2)).position).toBe('4');
  });

  it('creates its schema idempotently on a database that already has it', async () => {
    const db = open();
    await createSqliteEventStore(db).append('s', [newEvent()], 'no_stream');
    expect(await createSqliteEventStore(db).streamRevision('s')).toBe(0);
  });

  it('sees appends made through another connection by polling', async () => {
    const watcher = createSqliteEventStore(open(), { pollIntervalMs: 10 });
    const writer = createSqliteEventStore(open());
    const received: StoredEvent[] = [];
    const sub = watcher.subscribeAll(null, (batch) => void received.push(...batch));
    try {
      const written = (await writer.append('other-process', newEvents(2), 'no_stream')).events;
      await waitFor(() => received.length === 2, { what: 'events written by another connection' });
      expect(received).toEqual(written);
    } finally {
      await sub.close();
    }
  });

  it('enforces the expected revision between connections', async () => {
    const [a, b] = [createSqliteEventStore(open()), createSqliteEventStore(open())];
    await a.append('shared', [newEvent()], 'no_stream');
    await b.append('shared', [newEvent()], 0);
    await expect(a.append('shared', [newEvent()], 0)).rejects.toBeInstanceOf(ConcurrencyError);
    expect(await a.streamRevision('shared')).toBe(1);
  });
});
