/**
 * The delivery loop shared by the event store adapters: strictly ordered batches, one handler call
 * at a time, and handler failures retried (never dropped, never silent).
 */
import type { StoredEvent, Subscription } from '../../ports/event-store.js';

/** How an adapter reacts when a subscription handler (or its own read) fails. */
export interface SubscriptionRetryOptions {
  /** Delay before retry number `attempt` (1-based). Default: 100 ms doubling up to 5 s. */
  retryDelayMs?: (attempt: number) => number;
  /** Where failures are reported. Default: `console.error` (stderr). */
  logError?: (message: string, error: unknown) => void;
}

export type SubscriptionHandler = (events: StoredEvent[]) => Promise<void> | void;

export const defaultRetryDelayMs = (attempt: number): number => Math.min(100 * 2 ** (attempt - 1), 5_000);

const defaultLogError = (message: string, error: unknown): void => {
  console.error(message, error);
};

/** Resolved retry options, so adapters do not repeat the defaults. */
export function retryPolicy(options: SubscriptionRetryOptions = {}): Required<SubscriptionRetryOptions> {
  return { retryDelayMs: options.retryDelayMs ?? defaultRetryDelayMs, logError: options.logError ?? defaultLogError };
}

/**
 * A sleep that `cancel()` ends early (used by close so nothing waits out a backoff or a poll).
 * The timer keeps the process alive on purpose: a live subscription is work in progress.
 */
export function cancellableDelay(ms: number): { done: Promise<void>; cancel: () => void } {
  let cancel = (): void => {};
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    cancel = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  return { done, cancel };
}

/**
 * Calls `handler(batch)` until it succeeds or `isClosed()` turns true. A failure is logged and the
 * SAME batch is retried after the backoff, so the consumer never sees a gap. Returns false when the
 * subscription was closed before the batch was accepted.
 */
export async function deliverWithRetry(
  batch: StoredEvent[],
  handler: SubscriptionHandler,
  policy: Required<SubscriptionRetryOptions>,
  isClosed: () => boolean,
  trackDelay: (delay: { cancel: () => void } | null) => void,
): Promise<boolean> {
  for (let attempt = 1; !isClosed(); attempt++) {
    try {
      await handler(batch);
      return true;
    } catch (error) {
      if (isClosed()) return false;
      const delayMs = policy.retryDelayMs(attempt);
      policy.logError(
        `event store subscription: handler failed on the batch starting at position ${batch[0]?.position} ` +
          `(attempt ${attempt}); retrying the same batch in ${delayMs} ms`,
        error,
      );
      const delay = cancellableDelay(delayMs);
      trackDelay(delay);
      await delay.done;
      trackDelay(null);
    }
  }
  return false;
}

export interface PullSubscriptionOptions extends Required<SubscriptionRetryOptions> {
  after: string | null;
  handler: SubscriptionHandler;
  /** Reads up to `limit` events strictly after `after` (null = from the beginning), in global order. */
  readAfter: (after: string | null, limit: number) => Promise<StoredEvent[]>;
  /** Largest batch handed to the handler (catch-up reads in pages of this size). */
  batchSize: number;
  /** When set, re-reads at this interval while idle (sees appends by other processes). */
  pollIntervalMs?: number;
  /** Called once the loop has stopped for good (the adapter forgets the subscription). */
  onClosed: () => void;
}

/** A running pull subscription: `wake()` is called by the adapter after each local append. */
export interface PullSubscription extends Subscription {
  wake(): void;
}

/**
 * Catch-up then live, by pulling: read a page after the cursor, hand it over, advance; when there
 * is nothing new, sleep until woken (local append), the poll interval passes, or close.
 * A wake that arrives while reading is remembered (`dirty`), so no append is ever missed.
 */
export function startPullSubscription(options: PullSubscriptionOptions): PullSubscription {
  let closed = false;
  let dirty = false;
  let cursor = options.after;
  let sleeping: { cancel: () => void } | null = null;
  let retrying: { cancel: () => void } | null = null;
  const isClosed = (): boolean => closed;

  const sleepUntilWoken = async (): Promise<void> => {
    const delay = cancellableDelay(options.pollIntervalMs ?? 2 ** 31 - 1);
    sleeping = delay;
    await delay.done;
    sleeping = null;
  };

  const readNext = async (attempt: number): Promise<StoredEvent[] | null> => {
    try {
      return await options.readAfter(cursor, options.batchSize);
    } catch (error) {
      // A failing read (busy database, dropped connection) must not end the subscription.
      const delayMs = options.retryDelayMs(attempt);
      options.logError(`event store subscription: read after ${cursor ?? 'start'} failed; retrying in ${delayMs} ms`, error);
      const delay = cancellableDelay(delayMs);
      retrying = delay;
      await delay.done;
      retrying = null;
      return null;
    }
  };

  const loop = async (): Promise<void> => {
    let readFailures = 0;
    while (!closed) {
      dirty = false;
      const batch = await readNext(readFailures + 1);
      if (batch === null) {
        readFailures++;
        continue;
      }
      readFailures = 0;
      if (closed) break;
      if (batch.length === 0) {
        if (!dirty) await sleepUntilWoken();
        continue;
      }
      const accepted = await deliverWithRetry(batch, options.handler, options, isClosed, (d) => (retrying = d));
      if (!accepted) break;
      cursor = batch[batch.length - 1].position;
      // Reads and a synchronous handler settle as microtasks only: yield so a long catch-up
      // cannot starve timers and I/O (HTTP requests, other subscriptions) of the same process.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    options.onClosed();
  };
  void loop();

  return {
    wake() {
      dirty = true;
      sleeping?.cancel();
    },
    async close() {
      // Does not wait for an in-flight handler: close() may be called from inside the handler.
      closed = true;
      sleeping?.cancel();
      retrying?.cancel();
    },
  };
}
