/**
 * Idempotency keys (api.md "Idempotency"), kept in SQLite so they survive restarts. A key is
 * scoped per tenant; its record holds the request fingerprint and, once answered, the answer.
 * Claims are single synchronous statements, so two racing requests cannot both own a key.
 */
import type Database from 'better-sqlite3';

export interface StoredAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export type ClaimResult =
  | { kind: 'claimed' }
  | { kind: 'replay'; answer: StoredAnswer }
  | { kind: 'in_flight' }
  | { kind: 'mismatch' };

export function createIdempotencyStore(db: Database.Database, opts: { retentionMs: number; abandonAfterMs: number; now: () => number }) {
  db.exec(`CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, answer TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key))`);
  const get = db.prepare('SELECT fingerprint, answer, created_at, updated_at FROM idempotency_keys WHERE tenant = ? AND key = ?');
  const put = db.prepare('INSERT OR REPLACE INTO idempotency_keys (tenant, key, fingerprint, answer, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)');
  const answer = db.prepare('UPDATE idempotency_keys SET answer = ?, updated_at = ? WHERE tenant = ? AND key = ? AND fingerprint = ?');
  const release = db.prepare('DELETE FROM idempotency_keys WHERE tenant = ? AND key = ? AND answer IS NULL');
  const purge = db.prepare('DELETE FROM idempotency_keys WHERE created_at < ?');

  const claim = db.transaction((tenant: string, key: string, fingerprint: string): ClaimResult => {
    const now = opts.now();
    const row = get.get(tenant, key) as { fingerprint: string; answer: string | null; created_at: number; updated_at: number } | undefined;
    const expired = row !== undefined && row.created_at < now - opts.retentionMs;
    // An unanswered claim older than abandonAfterMs belongs to a process that died mid-request: take it over.
    const abandoned = row !== undefined && row.answer === null && row.updated_at < now - opts.abandonAfterMs;
    if (!row || expired || abandoned) {
      put.run(tenant, key, fingerprint, now, now);
      return { kind: 'claimed' };
    }
    if (row.fingerprint !== fingerprint) return { kind: 'mismatch' };
    if (row.answer === null) return { kind: 'in_flight' };
    return { kind: 'replay', answer: JSON.parse(row.answer) as StoredAnswer };
  });

  return {
    claim,
    /** Stores the answer of a claimed key. */
    complete(tenant: string, key: string, fingerprint: string, a: StoredAnswer): void {
      answer.run(JSON.stringify(a), opts.now(), tenant, key, fingerprint);
    },
    /** Frees a claimed key whose request failed in a way worth retrying (5xx, 429). */
    release(tenant: string, key: string): void {
      release.run(tenant, key);
    },
    purgeExpired(): number {
      return purge.run(opts.now() - opts.retentionMs).changes;
    },
  };
}

export type SqliteIdempotencyStore = ReturnType<typeof createIdempotencyStore>;

/**
 * What the HTTP hook needs; the SQLite store above answers synchronously, the shared one of NATS
 * mode (src/adapters/nats/idempotency-store.ts) asynchronously.
 */
export interface IdempotencyStore {
  claim(tenant: string, key: string, fingerprint: string): ClaimResult | Promise<ClaimResult>;
  complete(tenant: string, key: string, fingerprint: string, a: StoredAnswer): void | Promise<void>;
  release(tenant: string, key: string): void | Promise<void>;
  purgeExpired(): number | Promise<number>;
}
