/**
 * The durable stack timeout (docs/stacks.md "Timeout"): the running traversal's `deadline_at` is
 * stored in its `TraversalStarted` event, so this service only arms one timer per stack from the
 * folded state — at start from the read model, then as batches are projected — and on expiry
 * sends `ExpireTimeout`, which the actor ignores if that traversal is no longer running. A restart
 * re-arms from the log; a deadline that passed while the process was down fires at once.
 */
import type { Clock } from '../../ports/clock.js';
import type { StackState } from '../../domain/stack/state.js';
import { pendingDeadline } from '../../domain/stack/work.js';
import { createDurableTimers } from '../work/durable-timers.js';

export function createStackDeadlines(deps: { clock: Clock; expire: (stackId: string, traversalId: string, deadlineAt: string) => void }) {
  const timers = createDurableTimers(deps.clock);
  return {
    reconcile(s: StackState): void {
      const d = pendingDeadline(s);
      timers.set(s.id, d && { key: `${d.traversal_id}@${d.deadline_at}`, at: d.deadline_at, fire: () => deps.expire(s.id, d.traversal_id, d.deadline_at) });
    },
    armedCount: timers.armedCount,
    forget: timers.forget,
    stop: timers.stop,
  };
}

export type StackDeadlines = ReturnType<typeof createStackDeadlines>;
