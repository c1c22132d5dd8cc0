/**
 * The SQLite event store's group commit and its hand-over of appended events to in-process
 * subscribers (src/adapters/sqlite/append-group.ts): appends made in one event-loop turn share a
 * transaction, yet each keeps its own expected-revision check and outcome; subscribers get every
 * event once, in order, also when another connection appended in between.
 */
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
import { newEvent, newEvents } from './event-store.context.js';

let dir: string;
const opened: Database.Database[] = [];
const open = (): Database.Database => {
  const db = openSqlite(join(dir, 'ironclad.db'));
  db.pragma('wal_autocheckpoint = 0'); // keep every frame in the WAL, so frames count the commits' pages
  opened.push(db);
  return db;
};
/** Frames in the WAL: each commit appends the pages it dirtied, so fewer commits write fewer frames. */
const walFrames = (db: Database.Database): number => (db.pragma('wal_checkpoint(PASSIVE)') as { log: number }[])[0]!.log;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ironclad-group-'));
});
afterEach(() => {
  for (const db of opened.splice(0)) if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('SQLite group commit', () => {
  it('commits the appends of one event-loop turn together: far fewer WAL frames than one commit each', async () => {
    const one = open();
    const store = createSqliteEventStore(one);
    await store.append('node-warm', newEvents(1), 'no_stream');
    one.pragma('wal_checkpoint(TRUNCATE)');
    for (let i = 0; i < 20; i++) await store.append(`node-s${i}`, newEvents(2), 'no_stream');
    const sequential = walFrames(one);
    one.pragma('wal_checkpoint(TRUNCATE)');
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.append(`node-g${i}`, newEvents(2), 'no_stream')));
    const grouped = walFrames(one);
    expect(sequential).toBeGreaterThanOrEqual(40);
    expect(grouped * 4).toBeLessThan(sequential);
  });

  it('fails only the append whose expected revision does not hold; the others of the turn are stored', async () => {
    const store = createSqliteEventStore(open());
    await store.append('node-a', newEvents(1), 'no_stream');
    const [ok1, bad, ok2] = await Promise.allSettled([
      store.append('node-b', newEvents(2), 'no_stream'),
      store.append('node-a', newEvents(1), 5),
      store.append('node-c', newEvents(1), 'no_stream'),
    ]);
    expect(ok1.status).toBe('fulfilled');
    expect(ok2.status).toBe('fulfilled');
    expect(bad.status).toBe('rejected');
    const err = (bad as PromiseRejectedResult).reason as ConcurrencyError;
    expect(err).toBeInstanceOf(ConcurrencyError);
    expect(await store.streamRevision('node-a')).toBe(0);
    expect((await store.readAll()).map((e) => e.stream)).toEqual(['node-a', 'node-b', 'node-b', 'node-c']);
    // Positions stay contiguous: the rolled-back append left no hole.
    expect((await store.readAll()).map((e) => Number(e.position))).toEqual([1, 2, 3, 4]);
  });

  it('checks a second append to the same stream in the same turn against the first one', async () => {
    const store = createSqliteEventStore(open());
    const [first, second, stale] = await Promise.allSettled([
      store.append('node-x', newEvents(2), 'no_stream'),
      store.append('node-x', newEvents(1), 1),
      store.append('node-x', newEvents(1), 'no_stream'),
    ]);
    expect(first.status).toBe('fulfilled');
    expect(second.status === 'fulfilled' && second.value.revision).toBe(2);
    expect(stale.status === 'rejected' && stale.reason).toBeInstanceOf(ConcurrencyError);
  });

  it('answers a retry made in the same turn as the original with the original result, storing nothing twice', async () => {
    const store = createSqliteEventStore(open());
    const batch = newEvents(2);
    const [a, b] = await Promise.all([store.append('node-r', batch, 'no_stream'), store.append('node-r', batch, 'no_stream')]);
    expect(b.events.map((e) => e.position)).toEqual(a.events.map((e) => e.position));
    expect(await store.readAll()).toHaveLength(2);
  });

  it('settles an append only once it is committed: another connection already sees it', async () => {
    const store = createSqliteEventStore(open());
    const reader = open();
    const res = await store.append('node-d', [newEvent('Durable')], 'no_stream');
    const row = reader.prepare('SELECT type FROM events WHERE position = ?').get(Number(res.position)) as { type: string } | undefined;
    expect(row?.type).toBe('Durable');
  });
});

describe('appended events handed to in-process subscribers', () => {
  it('delivers every event once, in order, when another connection appended in between (read back from the table)', async () => {
    const mine = createSqliteEventStore(open());
    const other = createSqliteEventStore(open());
    const seen: StoredEvent[] = [];
    const sub = mine.subscribeAll(null, (events) => void seen.push(...events));
    await mine.append('node-1', newEvents(2), 'no_stream');
    await other.append('node-2', newEvents(3), 'no_stream'); // positions 3..5: not held by `mine`
    await mine.append('node-1', newEvents(2), 1);
    await waitFor(() => seen.length >= 7, { what: 'all 7 events delivered' });
    expect(seen.map((e) => Number(e.position))).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(seen.map((e) => e.stream)).toEqual(['node-1', 'node-1', 'node-2', 'node-2', 'node-2', 'node-1', 'node-1']);
    await sub.close();
    await other.close();
    await mine.close();
  });

  it('hands over the appended objects themselves (no JSON round trip) when they follow the cursor', async () => {
    const store = createSqliteEventStore(open());
    const seen: StoredEvent[] = [];
    const sub = store.subscribeAll(null, (events) => void seen.push(...events));
    const res = await store.append('node-h', newEvents(2), 'no_stream');
    await waitFor(() => seen.length >= 2, { what: 'both events delivered' });
    expect(seen[0]!.data).toBe(res.events[0]!.data);
    expect(seen.map((e) => e.position)).toEqual(res.events.map((e) => e.position));
    await sub.close();
    await store.close();
  });
});
