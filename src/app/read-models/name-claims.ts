/**
 * Names are unique per owner. A claim is taken synchronously (one SQLite statement) before the
 * enroll or rename is appended, and released if that fails, so two racing requests cannot both
 * get the same name in this process.
 */
import type Database from 'better-sqlite3';

export function createNameClaims(db: Database.Database) {
  const claim = db.prepare('INSERT INTO name_claims (owner, name, entity_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING');
  const owner = db.prepare('SELECT entity_id FROM name_claims WHERE owner = ? AND name = ?');
  const release = db.prepare('DELETE FROM name_claims WHERE owner = ? AND name = ? AND entity_id = ?');
  const dropStale = db.prepare(`DELETE FROM name_claims WHERE NOT EXISTS (
    SELECT 1 FROM rm_nodes n WHERE n.id = name_claims.entity_id AND n.name = name_claims.name AND n.owner = name_claims.owner AND n.deleted = 0)`);
  const addMissing = db.prepare(`INSERT OR IGNORE INTO name_claims (owner, name, entity_id)
    SELECT owner, name, id FROM rm_nodes WHERE name IS NOT NULL AND deleted = 0`);
  return {
    /**
     * Makes the claims match the read model (run at start, after the read models caught up): a
     * claim left by a request that crashed before its append is dropped, and claims lost with a
     * rebuilt database are restored.
     */
    reconcile(): { dropped: number; added: number } {
      return db.transaction(() => ({ dropped: dropStale.run().changes, added: addMissing.run().changes }))();
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
