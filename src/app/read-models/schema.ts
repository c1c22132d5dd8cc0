/**
 * Read-model tables (SQLite; `:memory:` in unit and api tests). They are derived data: a
 * projection rebuilds them from the log when its checkpoint is missing.
 */
import type Database from 'better-sqlite3';

export function createReadModelSchema(db: Database.Database): void {
  // name_claims gained a `kind` (node / stack names are separate namespaces). Claims are derived
  // data (reconciled from the read models at start), so an older table is simply rebuilt.
  const claimCols = db.prepare("SELECT name FROM pragma_table_info('name_claims')").all() as { name: string }[];
  if (claimCols.length > 0 && !claimCols.some((c) => c.name === 'kind')) db.exec('DROP TABLE name_claims');
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
    CREATE TABLE IF NOT EXISTS name_claims (
      kind TEXT NOT NULL DEFAULT 'node', owner TEXT NOT NULL, name TEXT NOT NULL, entity_id TEXT NOT NULL, PRIMARY KEY (kind, owner, name)
    );
    CREATE TABLE IF NOT EXISTS rm_stacks (
      id TEXT PRIMARY KEY,
      name TEXT,
      owner TEXT NOT NULL,
      status TEXT NOT NULL,
      deleted INTEGER NOT NULL,
      has_work INTEGER NOT NULL,
      deadline_at TEXT,
      created_at TEXT,
      state TEXT NOT NULL,
      position TEXT
    );
    CREATE INDEX IF NOT EXISTS rm_stacks_name ON rm_stacks(name);
    CREATE INDEX IF NOT EXISTS rm_stacks_work ON rm_stacks(has_work) WHERE has_work = 1;
    CREATE INDEX IF NOT EXISTS rm_stacks_deadline ON rm_stacks(deadline_at) WHERE deadline_at IS NOT NULL;
    CREATE INDEX IF NOT EXISTS rm_nodes_step ON rm_nodes(step_id) WHERE step_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS rm_nodes_deadline ON rm_nodes(deadline_at) WHERE deadline_at IS NOT NULL;
    -- The scheduler's candidates (nodes.ts candidates): free nodes of an owner and class, in name order.
    CREATE INDEX IF NOT EXISTS rm_nodes_candidates ON rm_nodes(owner, resource_class, name, id)
      WHERE provision_state = 'available' AND maintenance = 0 AND deleted = 0;
    -- Claims held by stack resources (a node's allocation), found by node or by stack.
    CREATE TABLE IF NOT EXISTS rm_node_claims (node_id TEXT PRIMARY KEY, stack_id TEXT NOT NULL, resource_name TEXT NOT NULL, claim_id TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS rm_node_claims_stack ON rm_node_claims(stack_id);
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
  db.exec('DELETE FROM rm_nodes; DELETE FROM rm_node_claims; DELETE FROM rm_stacks; DELETE FROM rm_tasks; DELETE FROM rm_checkpoints;');
}
