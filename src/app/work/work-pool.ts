/**
 * A bounded pool for work orders that follow the log: each order has a key (its step or action
 * id) and is run at most once per process however often the log shows it, at most `concurrency`
 * at a time, in submission order. Stopping aborts the running ones: they have not reported, so
 * the log still shows them pending and the next process runs them again (the actor ignores a
 * duplicate report). Used by the stack conductor; the node conductor keeps the same rules.
 */

export interface WorkPoolOptions<J> {
  concurrency: number;
  /** Runs one job; `signal` aborts when the pool stops. Errors are the runner's to handle. */
  run(job: J, signal: AbortSignal): Promise<void>;
  /** How many keys to remember (oldest forgotten first). Default 200 000. */
  remember?: number;
}

export interface WorkPool<J> {
  /** Queues the job unless its key was submitted before. Returns true when it was queued. */
  submit(key: string, job: J): boolean;
  /** Lets a key be submitted again (e.g. its report could not be recorded). */
  forget(key: string): void;
  stats(): { queued: number; running: number; completed: number };
  /** Stops taking jobs and aborts the running ones. */
  stop(): void;
}

export function createWorkPool<J>(opts: WorkPoolOptions<J>): WorkPool<J> {
  const limit = opts.remember ?? 200_000;
  const seen = new Set<string>();
  const queue: { key: string; job: J }[] = [];
  const inflight = new Map<string, AbortController>();
  let running = 0;
  let completed = 0;
  let stopped = false;

  function pump(): void {
    while (!stopped && running < opts.concurrency && queue.length > 0) {
      const { key, job } = queue.shift()!;
      const ac = new AbortController();
      inflight.set(key, ac);
      running++;
      void opts.run(job, ac.signal).catch(() => undefined).finally(() => {
        inflight.delete(key);
        running--;
        completed++;
        pump();
      });
    }
  }

  return {
    submit(key, job) {
      if (stopped || seen.has(key)) return false;
      seen.add(key);
      if (seen.size > limit) seen.delete(seen.values().next().value!);
      queue.push({ key, job });
      pump();
      return true;
    },
    forget: (key) => void seen.delete(key),
    stats: () => ({ queued: queue.length, running, completed }),
    stop() {
      stopped = true;
      queue.length = 0;
      for (const ac of inflight.values()) ac.abort();
    },
  };
}
