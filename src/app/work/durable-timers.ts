/**
 * One timer per entity for a deadline stored in the log (a node operation's `deadline_at`, a
 * stack traversal's). Re-setting the same deadline (same key) keeps the timer; a new one replaces
 * it; null cancels it. A deadline already past (it expired while the process was down) fires on
 * the next microtask, not on the next tick of the clock. The caller's `fire` decides on the actor,
 * which ignores a deadline whose operation has moved on.
 */
import type { Clock } from '../../ports/clock.js';

export interface DueDeadline {
  /** Identifies the deadline (e.g. `<op id>@<deadline_at>`). */
  key: string;
  /** ISO time it fires. */
  at: string;
  fire(): void;
}

export function createDurableTimers(clock: Clock) {
  const armed = new Map<string, { key: string; cancel: () => void }>();
  let stopped = false;

  function forget(id: string): void {
    armed.get(id)?.cancel();
    armed.delete(id);
  }

  return {
    /** Arms `deadline` for entity `id` (null: none wanted). */
    set(id: string, deadline: DueDeadline | null): void {
      const current = armed.get(id);
      if (current && deadline && current.key === deadline.key) return;
      forget(id);
      if (!deadline || stopped) return;
      const fire = (): void => {
        armed.delete(id);
        deadline.fire();
      };
      const due = Date.parse(deadline.at) - clock.now();
      if (due <= 0) {
        armed.set(id, { key: deadline.key, cancel: () => undefined });
        queueMicrotask(fire);
        return;
      }
      armed.set(id, { key: deadline.key, cancel: clock.setTimeout(fire, due) });
    },
    /** Cancels the entity's timer, if any (e.g. its partition moved to another process). */
    forget,
    armedCount: (): number => armed.size,
    stop(): void {
      stopped = true;
      for (const a of armed.values()) a.cancel();
      armed.clear();
    },
  };
}
