/** Time comes in through this port so tests can control it (no sleeping in tests). */
export interface Clock {
  now(): number;
  /** Calls `fn` after `ms` of this clock's time; returns a cancel function. */
  setTimeout(fn: () => void, ms: number): () => void;
}

export interface Ids {
  /** A new unique id (uuid v4 or v7). */
  next(): string;
}
