/**
 * Opens the embedded SQLite database with the settings every SQLite adapter relies on.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

export interface OpenSqliteOptions {
  /**
   * `normal` (default): in WAL mode a commit survives a crash or `kill -9` of the process, but a
   * power loss or OS crash can lose the last few commits (the WAL is not fsynced on every commit).
   * `full`: fsync on every commit, durable across power loss, several times slower.
   * Configured by `IRONCLAD_SQLITE_SYNC=full` (read in src/config.ts, not here).
   */
  synchronous?: 'normal' | 'full';
  /** How long a writer waits for another connection's lock before SQLITE_BUSY. Default 5000 ms. */
  busyTimeoutMs?: number;
}

/**
 * Opens (creating if needed, with its parent folder) the database file at `path` and sets
 * `journal_mode = WAL` (readers never block the writer; several processes may share the file),
 * `synchronous`, `busy_timeout` and `foreign_keys = ON`. The caller owns the connection and closes it.
 * `:memory:` is accepted for throwaway databases (WAL does not apply to it).
 */
export function openSqlite(path: string, options: OpenSqliteOptions = {}): Database.Database {
  if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5_000))}`);
    db.pragma('foreign_keys = ON');
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}
