/**
 * The snapshot store port. A snapshot is a cache of an actor's folded state at a stream revision:
 * the log stays the truth, so any snapshot may be lost or deleted at any time.
 */

export interface Snapshot {
  /** Revision of the last event folded into `state`. */
  revision: number;
  /** JSON-serializable state. */
  state: unknown;
}

export interface SnapshotStore {
  /** The newest snapshot of a stream, or null. The returned state is a copy the caller may mutate. */
  get(stream: string): Promise<Snapshot | null>;
  /**
   * Keeps only the newest snapshot per stream: a put with a revision lower than the stored one is
   * ignored (a slow writer cannot roll a snapshot back); an equal revision replaces it (the same
   * events folded by newer code). Throws TypeError for a revision that is not a non-negative
   * integer or a state that is not JSON-serializable.
   */
  put(stream: string, revision: number, state: unknown): Promise<void>;
  /** Removes the stream's snapshot; a no-op when there is none. */
  delete(stream: string): Promise<void>;
}
