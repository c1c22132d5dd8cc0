/**
 * In-memory snapshot store, held to the same contract as the SQLite one. States are kept as JSON
 * text so callers never share references with the store.
 */
import type { Snapshot, SnapshotStore } from '../../ports/snapshot-store.js';
import { serializeSnapshot } from '../shared/snapshot-rules.js';

/** Creates an empty in-memory snapshot store (newest revision per stream wins). */
export function createMemorySnapshotStore(): SnapshotStore {
  const snapshots = new Map<string, { revision: number; state: string }>();
  return {
    async get(stream): Promise<Snapshot | null> {
      const s = snapshots.get(stream);
      return s ? { revision: s.revision, state: JSON.parse(s.state) as unknown } : null;
    },
    async put(stream, revision, state) {
      const json = serializeSnapshot(stream, revision, state);
      const current = snapshots.get(stream);
      if (current && current.revision > revision) return;
      snapshots.set(stream, { revision, state: json });
    },
    async delete(stream) {
      snapshots.delete(stream);
    },
  };
}
