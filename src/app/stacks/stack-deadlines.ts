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

export function createStackDeadlines(deps: { clock: Clock; expire: (stackId: string, traversalId: string, deadlineAt: string) => void }) {
  const armed = new Map<string, { key: string; cancel: () => void }>();
  let stopped = false;

  function reconcile(s: StackState): void {
    const d = pendingDeadline(s);
    const key = d ? `${d.traversal_id}@${d.deadline_at}` : null;
    const current = armed.get(s.id);
    if (current?.key === key) return;
    current?.cancel();
    armed.delete(s.id);
    if (!d || !key || stopped) return;
    const fire = (): void => {
      armed.delete(s.id);
      deps.expire(s.id, d.traversal_id, d.deadline_at);
    };
    const due = Date.parse(d.deadline_at) - deps.clock.now();
    if (due <= 0) {
      armed.set(s.id, { key, cancel: () => undefined });
      queueMicrotask(fire);
      return;
    }
    armed.set(s.id, { key, cancel: deps.clock.setTimeout(fire, due) });
  }

  return {
    reconcile,
    armedCount: () => armed.size,
    stop(): void {
      stopped = true;
      for (const a of armed.values()) a.cancel();
      armed.clear();
    },
  };
}

export type StackDeadlines = ReturnType<typeof createStackDeadlines>;
