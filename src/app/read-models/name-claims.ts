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
  return {
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
