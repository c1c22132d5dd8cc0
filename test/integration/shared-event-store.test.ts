/**
 * One SQLite event store file shared by several processes of a host (IRONCLAD_EVENT_STORE_FILE):
 * a subscription sees another connection's appends through `PRAGMA data_version` (not only the
 * slow re-read), and two Ironclads on the same file each keep their own read models of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/adapters/sqlite/open.js';
import { createSqliteEventStore } from '../../src/adapters/sqlite/event-store.js';
import type { EventStore, StoredEvent } from '../../src/ports/event-store.js';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';

const HOUR = 3_600_000;

describe('an event store file shared by several processes', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });
  const tempFile = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'ironclad-shared-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    return join(dir, 'events.db');
  };
  const open = (file: string, options: Parameters<typeof createSqliteEventStore>[1]): EventStore => {
    const db = openSqlite(file);
    const store = createSqliteEventStore(db, options);
    cleanup.push(async () => {
      await store.close();
      db.close();
    });
    return store;
  };
  const event = (i: number) => ({ id: `e-${i}`, type: 'Thing', data: { i }, metadata: {} });

  it('wakes a subscription on another connection\'s commit without waiting for the re-read', async () => {
    const file = tempFile();
    // The re-read is an hour away: only the data_version watch can deliver in time.
    const reader = open(file, { pollIntervalMs: HOUR, watchIntervalMs: 10 });
    const writer = open(file, { pollIntervalMs: HOUR });
    const got: StoredEvent[] = [];
    const sub = reader.subscribeAll(null, (events) => void got.push(...events));
    cleanup.push(() => sub.close());
    await writer.append('thing-1', [event(1)], 'no_stream');
    await waitFor(() => got.length === 1, { what: 'the other connection\'s append delivered' });
    await writer.append('thing-1', [event(2), event(3)], 0);
    await waitFor(() => got.length === 3, { what: 'the next appends delivered' });
    expect(got.map((e) => e.id)).toEqual(['e-1', 'e-2', 'e-3']);
  });

  it('two Ironclads on one IRONCLAD_EVENT_STORE_FILE each project it into their own read models', async () => {
    const file = tempFile();
    const harness = async (): Promise<Harness> => {
      const h = await createHarness({ IRONCLAD_EVENT_STORE_FILE: file }, { persistent: true });
      cleanup.push(() => h.close());
      return h;
    };
    const h1 = await harness();
    const h2 = await harness();
    const id = await h1.enroll({ name: 'shared-1' });
    await waitFor(async () => (await h2.req({ method: 'GET', url: `/v1/nodes/${id}` })).statusCode === 200, { what: 'the second process sees the node' });
    const seen = await h2.node(id);
    expect(seen).toMatchObject({ id, name: 'shared-1', provision_state: 'enroll' });
    // the read models are separate databases (each process's data dir), the log is one
    expect(h1.ic.config.IRONCLAD_DATA_DIR).not.toBe(h2.ic.config.IRONCLAD_DATA_DIR);
    expect(await h1.store.headPosition()).toBe(await h2.store.headPosition());
  });
});
