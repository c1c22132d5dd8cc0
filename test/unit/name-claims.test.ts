import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { createNameClaims } from '../../src/app/read-models/name-claims.js';
import { createReadModelSchema } from '../../src/app/read-models/schema.js';

describe('name claims scoped to nodes and stacks', () => {
  it('node names and stack names are separate namespaces, each unique per owner', async () => {
    const db = new Database(':memory:');
    createReadModelSchema(db);
    const nodes = createNameClaims(db);
    const stacks = createNameClaims(db, 'stack');
    expect(await nodes.claim('acme', 'web', 'n1')).toBe(true);
    expect(await stacks.claim('acme', 'web', 's1')).toBe(true);
    expect(await stacks.claim('acme', 'web', 's2')).toBe(false);
    expect(await stacks.claim('globex', 'web', 's3')).toBe(true);
    await stacks.release('acme', 'web', 's1');
    expect(await nodes.claim('acme', 'web', 'n2')).toBe(false); // the node's claim is untouched
    expect(await stacks.claim('acme', 'web', 's2')).toBe(true);
  });

  it('reconciles each scope against its own read model', async () => {
    const db = new Database(':memory:');
    createReadModelSchema(db);
    db.prepare(`INSERT INTO rm_stacks (id, name, owner, status, deleted, has_work, deadline_at, created_at, state, position)
      VALUES ('s1', 'live', 'acme', 'CREATE_COMPLETE', 0, 0, NULL, NULL, '{}', '1'), ('s2', 'gone', 'acme', 'DELETE_COMPLETE', 1, 0, NULL, NULL, '{}', '2')`).run();
    const nodes = createNameClaims(db);
    const stacks = createNameClaims(db, 'stack');
    await nodes.claim('acme', 'n', 'n1');
    await stacks.claim('acme', 'gone', 's2');
    await stacks.claim('acme', 'crashed', 's9');
    expect(stacks.reconcile()).toEqual({ dropped: 2, added: 1 });
    expect(await stacks.claim('acme', 'live', 'other')).toBe(false);
    expect(await stacks.claim('acme', 'gone', 'new')).toBe(true);
    expect(await nodes.claim('acme', 'n', 'n2')).toBe(false); // the stack reconcile left node claims alone
  });

  it('rebuilds a name_claims table from before scopes (claims are derived data)', () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE name_claims (owner TEXT NOT NULL, name TEXT NOT NULL, entity_id TEXT NOT NULL, PRIMARY KEY (owner, name))');
    db.exec("INSERT INTO name_claims VALUES ('acme', 'web', 'n1')");
    createReadModelSchema(db);
    const cols = (db.prepare("SELECT name FROM pragma_table_info('name_claims')").all() as { name: string }[]).map((c) => c.name);
    expect(cols).toEqual(['kind', 'owner', 'name', 'entity_id']);
  });
});
