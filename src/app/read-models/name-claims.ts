/**
 * Names are unique per owner. A claim is taken synchronously (one SQLite statement) before the
 * enroll or rename is appended, and released if that fails, so two racing requests cannot both
 * get the same name in this process.
 */
import type Database from 'better-sqlite3';

/** Which names a claims instance guards: node names and stack names are separate namespaces. */
export type NameScope = 'node' | 'stack';
/** The read model each scope reconciles against (both have id, name, owner, deleted). */
const SOURCE: Record<NameScope, string> = { node: 'rm_nodes', stack: 'rm_stacks' };

export function createNameClaims(db: Database.Database, scope: NameScope = 'node') {
  const rm = SOURCE[scope];
  const claimStmt = db.prepare('INSERT INTO name_claims (kind, owner, name, entity_id) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING');
  const ownerStmt = db.prepare('SELECT entity_id FROM name_claims WHERE kind = ? AND owner = ? AND name = ?');
  const releaseStmt = db.prepare('DELETE FROM name_claims WHERE kind = ? AND owner = ? AND name = ? AND entity_id = ?');
  const dropStale = db.prepare(`DELETE FROM name_claims WHERE kind = ? AND NOT EXISTS (
    SELECT 1 FROM ${rm} n WHERE n.id = name_claims.entity_id AND n.name = name_claims.name AND n.owner = name_claims.owner AND n.deleted = 0)`);
  const addMissing = db.prepare(`INSERT OR IGNORE INTO name_claims (kind, owner, name, entity_id)
    SELECT ?, owner, name, id FROM ${rm} WHERE name IS NOT NULL AND deleted = 0`);
  const claim = { run: (o: string, n: string, id: string) => claimStmt.run(scope, o, n, id) };
  const owner = { get: (o: string, n: string) => ownerStmt.get(scope, o, n) };
  const release = { run: (o: string, n: string, id: string) => releaseStmt.run(scope, o, n, id) };
  return {
    /**
     * Makes the claims match the read model (run at start, after the read models caught up): a
     * claim left by a request that crashed before its append is dropped, and claims lost with a
     * rebuilt database are restored.
     */
    reconcile(): { dropped: number; added: number } {
      return db.transaction(() => ({ dropped: dropStale.run(scope).changes, added: addMissing.run(scope).changes }))();
    },
    /** True when `entityId` now holds (or already held) the name. */
    claim(ownerTenant: string, name: string, entityId: string): boolean {
      claim.run(ownerTenant, name, entityId);
      const row = owner.get(ownerTenant, name) as { entity_id: string } | undefined;
      return row?.entity_id === entityId;
    },
    release(ownerTenant: string, name: string, entityId: string): void {
      release.run(ownerTenant, name, entityId);
    },
  };
}

export type NameClaims = ReturnType<typeof createNameClaims>;
