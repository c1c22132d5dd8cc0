/**
 * Durable deadlines: every transient state's deadline is stored in the event that entered it
 * (`deadline_at`). This service arms one timer per node from the read model — at start for every
 * node that has one, then as batches are projected — and on expiry sends ExpireDeadline to the
 * actor, which ignores it if the operation moved on. A restart re-arms from the log: nothing is lost or reset.
 */
import type { Clock } from '../../ports/clock.js';
import type { NodeState } from '../../domain/node/state.js';
import { createDurableTimers } from './durable-timers.js';

export function createDeadlineScheduler(deps: { clock: Clock; expire: (nodeId: string, opId: string, deadlineAt: string) => void }) {
  const timers = createDurableTimers(deps.clock);
  return {
    reconcile(s: NodeState): void {
      const op = s.op;
      if (!op?.deadline_at || s.deleted) return timers.set(s.id, null);
      const { op_id, deadline_at } = op;
      timers.set(s.id, { key: `${op_id}@${deadline_at}`, at: deadline_at, fire: () => deps.expire(s.id, op_id, deadline_at) });
    },
    armedCount: timers.armedCount,
    /** Cancels the node's timer, if any (its partition moved to another process). */
    forget: timers.forget,
    stop: timers.stop,
  };
}

export type DeadlineScheduler = ReturnType<typeof createDeadlineScheduler>;
