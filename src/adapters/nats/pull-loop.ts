/**
 * Pulls from a durable JetStream consumer no faster than the handlers run: it fetches only as many
 * messages as there are free slots, so nothing waits in a client buffer while its ack-wait timer
 * runs (a buffered message would otherwise be redelivered elsewhere before it even started).
 * `close()` stops fetching and returns; deliveries still being handled finish on their own, and
 * anything left unsettled is redelivered by the server after the ack wait.
 */
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../../ports/logger.js';
import { cancellableDelay } from '../shared/catch-up-subscription.js';

export interface PullLoop {
  close(): Promise<void>;
}

/** How long one pull request waits for messages before it is renewed (the server minimum is 1 s). */
const FETCH_EXPIRES_MS = 2_000;

export function startPullLoop(consumer: Consumer, concurrency: number, handle: (m: JsMsg) => Promise<void>, log: Logger, what: string): PullLoop {
  const limit = Math.max(1, concurrency);
  const running = new Set<Promise<void>>();
  let stopped = false;
  let batch: ConsumerMessages | null = null;
  let pause: { cancel: () => void } | null = null;

  const loop = async (): Promise<void> => {
    for (let failures = 0; !stopped; ) {
      if (running.size >= limit) {
        await Promise.race(running);
        continue;
      }
      try {
        batch = await consumer.fetch({ max_messages: limit - running.size, expires: FETCH_EXPIRES_MS });
        for await (const m of batch) {
          if (stopped) break; // left unsettled: redelivered after the ack wait
          const p: Promise<void> = handle(m)
            .catch((err: unknown) => log.error({ err, seq: m.seq }, `${what}: handler failed`))
            .finally(() => running.delete(p));
          running.add(p);
        }
        failures = 0;
      } catch (err) {
        if (stopped) break;
        failures++;
        log.warn({ err, failures }, `${what}: pull failed; retrying`);
        const d = cancellableDelay(Math.min(100 * 2 ** failures, 5_000));
        pause = d;
        await d.done;
        pause = null;
      } finally {
        batch = null;
      }
    }
  };
  const done = loop();

  return {
    async close() {
      stopped = true;
      pause?.cancel();
      await batch?.close();
      await done;
    },
  };
}
