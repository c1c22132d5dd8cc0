import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/adapters/sqlite/open.js';
import { createSqliteSnapshotStore } from '../../src/adapters/sqlite/snapshot-store.js';
import { snapshotStoreContract } from './snapshot-store.contract.js';

snapshotStoreContract('sqlite', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ironclad-snapshots-'));
  const db = openSqlite(join(dir, 'ironclad.db'));
  return {
    store: createSqliteSnapshotStore(db),
    cleanup: async () => {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describe('SQLite snapshot store file', () => {
  it('keeps snapshots across closing and reopening the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ironclad-snapshots-'));
    try {
      const path = join(dir, 'ironclad.db');
      const first = openSqlite(path);
      await createSqliteSnapshotStore(first).put('node-1', 3, { state: 'ready' });
      first.close();
      const second = openSqlite(path);
      expect(await createSqliteSnapshotStore(second).get('node-1')).toEqual({ revision: 3, state: { state: 'ready' } });
      second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
