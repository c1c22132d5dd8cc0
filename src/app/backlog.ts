/**
 * The global backlog of pending (queued + running) tasks and its observed drain rate. Above the
 * limit new commands get 503 `overloaded` with a Retry-After computed from how fast tasks are
 * actually finishing (not a constant).
 *
 * The tasks read model only counts a task once its events are projected, which lags the append;
 * a burst of concurrent commands would all pass a check against it. So a command first takes a
 * slot with `admit()` (synchronously, before it appends), and a task it created keeps counting
 * until the projector has passed the answer's position: the limit holds under concurrency.
 */
import type { Clock } from '../ports/clock.js';
import { comparePositions } from '../ports/event-store.js';

/** A slot taken by one command; settle it exactly once, when the command has been answered. */
export interface BacklogTicket {
  /** `position` of the append that created a new task, or null when none was created (coalesced, refused, failed). */
  settle(position: string | null): void;
}

export function createBacklog(deps: { clock: Clock; limit: number; pending: () => number; finished: () => number; projectedTo: () => string | null }) {
  let rate = 0; // finished tasks per second (exponentially weighted)
  let windowStart = deps.clock.now();
  let finishedAtStart = deps.finished();
  let reserved = 0; // admitted commands not answered yet
  let unprojected: string[] = []; // positions of created tasks the read model does not count yet

  function roll(): void {
    const now = deps.clock.now();
    const elapsed = now - windowStart;
    if (elapsed < 1000) return;
    const observed = ((deps.finished() - finishedAtStart) * 1000) / elapsed;
    rate = rate === 0 ? observed : 0.7 * rate + 0.3 * observed;
    windowStart = now;
    finishedAtStart = deps.finished();
  }

  function pending(): number {
    const at = deps.projectedTo();
    if (at !== null && unprojected.length > 0) unprojected = unprojected.filter((p) => comparePositions(p, at) > 0);
    return deps.pending() + reserved + unprojected.length;
  }

  /** Seconds a client should wait before retrying, or null when there is room. */
  function retryAfter(): number | null {
    const n = pending();
    if (n < deps.limit) return null;
    roll();
    const excess = n - deps.limit + 1;
    const seconds = rate > 0 ? Math.ceil(excess / rate) : 30;
    return Math.min(300, Math.max(1, seconds));
  }

  return {
    /** Queued + running tasks, counting those admitted but not yet projected. */
    pending,
    drainRate(): number {
      roll();
      return rate;
    },
    retryAfter,
    /** Takes a slot for a command that may create a task, or says how long to wait (seconds) when full. */
    admit(): { ticket: BacklogTicket } | { retryAfterS: number } {
      const wait = retryAfter();
      if (wait !== null) return { retryAfterS: wait };
      reserved++;
      let settled = false;
      return {
        ticket: {
          settle(position) {
            if (settled) return;
            settled = true;
            reserved--;
            if (position !== null) unprojected.push(position);
          },
        },
      };
    },
  };
}

export type Backlog = ReturnType<typeof createBacklog>;
