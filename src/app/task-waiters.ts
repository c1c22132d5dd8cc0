/**
 * Long-poll without busy polling: callers wait on a task id; the projector wakes them when the
 * task's terminal event has been projected.
 */
import type { TaskRecord } from '../domain/tasks.js';
import { isTerminal } from '../domain/tasks.js';

export function createTaskWaiters() {
  const waiting = new Map<string, Set<(t: TaskRecord | null) => void>>();
  let released = false;
  return {
    /** Resolves with the terminal task, or null after `ms` (at once after `releaseAll`). */
    wait(taskId: string, ms: number): Promise<TaskRecord | null> {
      if (released) return Promise.resolve(null);
      return new Promise((resolve) => {
        const set = waiting.get(taskId) ?? new Set();
        waiting.set(taskId, set);
        const done = (t: TaskRecord | null): void => {
          clearTimeout(timer);
          set.delete(wake);
          if (set.size === 0 && waiting.get(taskId) === set) waiting.delete(taskId);
          resolve(t);
        };
        const wake = (t: TaskRecord | null): void => done(t);
        const timer = setTimeout(() => done(null), ms);
        set.add(wake);
      });
    },
    /** Called with the tasks changed by a projected batch. */
    notify(tasks: Iterable<TaskRecord>): void {
      for (const t of tasks) {
        if (!isTerminal(t.state)) continue;
        const set = waiting.get(t.id);
        if (set) for (const wake of [...set]) wake(t);
      }
    },
    /** Ends every wait now with null (not terminal yet), and all later ones at once: the server is stopping. */
    releaseAll(): void {
      released = true;
      for (const set of [...waiting.values()]) for (const wake of [...set]) wake(null);
    },
    size: () => waiting.size,
  };
}

export type TaskWaiters = ReturnType<typeof createTaskWaiters>;
