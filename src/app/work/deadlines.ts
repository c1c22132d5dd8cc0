/**
 * Durable deadlines: every transient state's deadline is stored in the event that entered it
 * (`deadline_at`). This service arms one timer per node from the read model — at start for every
 * node that has one, then as batches are projected — and on expiry sends ExpireDeadline to the
 * actor, which ignores it if the operation moved on. A restart re-arms from the log: nothing is lost or reset.
 */
import type { Clock } from '../../ports/clock.js';
import type { NodeState } from '../../domain/node/state.js';

export function createDeadlineScheduler(deps: { clock: Clock; expire: (nodeId: string, opId: string, deadlineAt: string) => void }) {
  const armed = new Map<string, { key: string; cancel: () => void }>();
  let stopped = false;

  function reconcile(s: NodeState): void {
    const op = s.op;
    const key = op?.deadline_at ? `${op.op_id}@${op.deadline_at}` : null;
    const current = armed.get(s.id);
    if (current?.key === key) return;
    current?.cancel();
    armed.delete(s.id);
    if (!op || !op.deadline_at || !key || s.deleted || stopped) return;
    const due = Date.parse(op.deadline_at) - deps.clock.now();
    const { op_id, deadline_at } = op;
    const fire = (): void => {
      armed.delete(s.id);
      deps.expire(s.id, op_id, deadline_at);
    };
    if (due <= 0) {
      // Already past (e.g. it expired while the process was down): expire now, not on the next tick of the clock.
      armed.set(s.id, { key, cancel: () => undefined });
      queueMicrotask(fire);
      return;
    }
    armed.set(s.id, { key, cancel: deps.clock.setTimeout(fire, due) });
  }

  return {
    reconcile,
    armedCount: () => armed.size,
    /** Cancels the node's timer, if any (its partition moved to another process). */
    forget(nodeId: string): void {
      armed.get(nodeId)?.cancel();
      armed.delete(nodeId);
    },
    stop(): void {
      stopped = true;
      for (const a of armed.values()) a.cancel();
      armed.clear();
    },
  };
}

export type DeadlineScheduler = ReturnType<typeof createDeadlineScheduler>;
