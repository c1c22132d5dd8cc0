/**
 * The global backlog of pending (queued + running) tasks and its observed drain rate. Above the
 * limit new commands get 503 `overloaded` with a Retry-After computed from how fast tasks are
 * actually finishing (not a constant).
 */
import type { Clock } from '../ports/clock.js';

export function createBacklog(deps: { clock: Clock; limit: number; pending: () => number; finished: () => number }) {
  let rate = 0; // finished tasks per second (exponentially weighted)
  let windowStart = deps.clock.now();
  let finishedAtStart = deps.finished();

  function roll(): void {
    const now = deps.clock.now();
    const elapsed = now - windowStart;
    if (elapsed < 1000) return;
    const observed = ((deps.finished() - finishedAtStart) * 1000) / elapsed;
    rate = rate === 0 ? observed : 0.7 * rate + 0.3 * observed;
    windowStart = now;
    finishedAtStart = deps.finished();
  }

  return {
    pending: deps.pending,
    drainRate(): number {
      roll();
      return rate;
    },
    /** Seconds a client should wait before retrying, or null when there is room. */
    retryAfter(): number | null {
      const pending = deps.pending();
      if (pending < deps.limit) return null;
      roll();
      const excess = pending - deps.limit + 1;
      const seconds = rate > 0 ? Math.ceil(excess / rate) : 30;
      return Math.min(300, Math.max(1, seconds));
    },
  };
}

export type Backlog = ReturnType<typeof createBacklog>;
