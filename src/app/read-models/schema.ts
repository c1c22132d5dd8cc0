/**
 * Read-model tables (SQLite; `:memory:` in unit and api tests). They are derived data: a
 * projection rebuilds them from the log when its checkpoint is missing.
 */
import type Database from 'better-sqlite3';

export function createReadModelSchema(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS rm_checkpoints (name TEXT PRIMARY KEY, position TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS rm_nodes (
      id TEXT PRIMARY KEY,
      name TEXT,
      owner TEXT NOT NULL,
      provision_state TEXT NOT NULL,
      resource_class TEXT NOT NULL,
      maintenance INTEGER NOT NULL,
      has_pending INTEGER NOT NULL,
      deleted INTEGER NOT NULL,
      step_id TEXT,
      deadline_at TEXT,
      state TEXT NOT NULL,
      position TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS rm_nodes_name ON rm_nodes(name) WHERE name IS NOT NULL AND deleted = 0;
    CREATE TABLE IF NOT EXISTS name_claims (owner TEXT NOT NULL, name TEXT NOT NULL, entity_id TEXT NOT NULL, PRIMARY KEY (owner, name));
    CREATE INDEX IF NOT EXISTS rm_nodes_step ON rm_nodes(step_id) WHERE step_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS rm_nodes_deadline ON rm_nodes(deadline_at) WHERE deadline_at IS NOT NULL;
    CREATE TABLE IF NOT EXISTS rm_tasks (
      id TEXT PRIMARY KEY,
      seq INTEGER NOT NULL,
      owner TEXT NOT NULL,
      resource_type TEXT NOT NULL,
      resource_id TEXT NOT NULL,
      state TEXT NOT NULL,
      action TEXT NOT NULL,
      created_at TEXT NOT NULL,
      task TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS rm_tasks_seq ON rm_tasks(seq);
    CREATE INDEX IF NOT EXISTS rm_tasks_resource ON rm_tasks(resource_id, seq);
    CREATE INDEX IF NOT EXISTS rm_tasks_state ON rm_tasks(state, seq);
  `);
}

/** Drops every read-model row (a rebuild from scratch). */
export function clearReadModels(db: Database.Database): void {
  db.exec('DELETE FROM rm_nodes; DELETE FROM rm_tasks; DELETE FROM rm_checkpoints;');
}
