/**
 * Waiting on a node without polling: stack workers wait for a condition on a node's projected
 * state; the projector's batches (`notify`) wake them. The condition is checked once at once
 * (the read model may already hold it) and then on every projected change of that node.
 */
import type { NodeState } from '../../../domain/node/state.js';

export interface NodeWaitOptions {
  signal?: AbortSignal;
  /** Called on every projected change of the node while waiting (e.g. to heartbeat). */
  onChange?(state: NodeState): void;
}

interface Waiter {
  test(s: NodeState): boolean;
  done(s: NodeState): void;
  onChange?(s: NodeState): void;
}

export function createNodeWaiter(deps: { get(id: string): NodeState | null }) {
  const waiting = new Map<string, Set<Waiter>>();

  function remove(id: string, w: Waiter): void {
    const set = waiting.get(id);
    set?.delete(w);
    if (set && set.size === 0) waiting.delete(id);
  }

  return {
    /**
     * Resolves with the node's projected state once `until(state)` holds; rejects with the
     * signal's reason when it aborts first. Never resolves on its own otherwise (callers bound it
     * with their signal: the stack's deadline or the process stopping).
     */
    until(id: string, until: (s: NodeState) => boolean, opts: NodeWaitOptions = {}): Promise<NodeState> {
      const now = deps.get(id);
      if (now && until(now)) return Promise.resolve(now);
      return new Promise((resolve, reject) => {
        const onAbort = (): void => {
          remove(id, w);
          reject(opts.signal!.reason ?? new Error('aborted'));
        };
        const w: Waiter = {
          test: until,
          done: (s) => {
            remove(id, w);
            opts.signal?.removeEventListener('abort', onAbort);
            resolve(s);
          },
          onChange: opts.onChange,
        };
        if (opts.signal?.aborted) return onAbort();
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        const set = waiting.get(id) ?? new Set<Waiter>();
        waiting.set(id, set);
        set.add(w);
      });
    },
    /** Feeds the nodes changed by one projected batch (projector.onBatch). */
    notify(nodes: Iterable<NodeState>): void {
      if (waiting.size === 0) return;
      for (const s of nodes) {
        const set = waiting.get(s.id);
        if (!set) continue;
        for (const w of [...set]) {
          w.onChange?.(s);
          if (w.test(s)) w.done(s);
        }
      }
    },
    size: (): number => waiting.size,
  };
}

export type NodeWaiter = ReturnType<typeof createNodeWaiter>;
