/**
 * SQLite snapshot store: one row per stream, kept beside the events in the same file.
 */
import type Database from 'better-sqlite3';
import type { Snapshot, SnapshotStore } from '../../ports/snapshot-store.js';
import { serializeSnapshot } from '../shared/snapshot-rules.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  stream   TEXT    PRIMARY KEY,
  revision INTEGER NOT NULL,
  state    TEXT    NOT NULL
);`;

/**
 * Creates the store on a connection opened by the caller (see `openSqlite`); creates its table if
 * missing. The "newest wins" rule is one upsert statement, so it also holds between processes.
 */
export function createSqliteSnapshotStore(db: Database.Database): SnapshotStore {
  db.exec(SCHEMA);
  const select = db.prepare<[string], { revision: number; state: string }>('SELECT revision, state FROM snapshots WHERE stream = ?');
  const upsert = db.prepare<[string, number, string]>(
    `INSERT INTO snapshots (stream, revision, state) VALUES (?, ?, ?)
     ON CONFLICT (stream) DO UPDATE SET revision = excluded.revision, state = excluded.state
     WHERE excluded.revision >= snapshots.revision`,
  );
  const remove = db.prepare<[string]>('DELETE FROM snapshots WHERE stream = ?');
  return {
    async get(stream): Promise<Snapshot | null> {
      const row = select.get(stream);
      return row ? { revision: row.revision, state: JSON.parse(row.state) as unknown } : null;
    },
    async put(stream, revision, state) {
      upsert.run(stream, revision, serializeSnapshot(stream, revision, state));
    },
    async delete(stream) {
      remove.run(stream);
    },
  };
}
