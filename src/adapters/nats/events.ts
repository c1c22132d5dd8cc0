/**
 * Notifications on JetStream: publish with Nats-Msg-Id = event id (the stream stores it once
 * within its duplicate window), subscribe with an ordered consumer (client-managed, gap-checked,
 * recreated from the last sequence it saw after any hiccup) from a stream sequence.
 */
import { DeliverPolicy, type JetStreamClient, type ConsumerMessages } from '@nats-io/jetstream';
import {
  eventSubject, SUBJECT_ROOT,
  type EventEnvelope, type EventSubscription, type NotificationHandler, type PublishAck, type SubscribeEventsOptions,
} from '../../ports/bus.js';
import type { Logger } from '../../ports/logger.js';
import { cancellableDelay, defaultRetryDelayMs } from '../shared/catch-up-subscription.js';

/** A JetStream publish with Nats-Msg-Id that resolves with the stream's ack (./reply-inbox.ts `publishStored`). */
export type PublishStored = (subject: string, body: string, opts: { msgId: string }) => Promise<{ seq: number; duplicate: boolean }>;

export async function publishEvent(publish: PublishStored, envelope: EventEnvelope, tenant: string): Promise<PublishAck> {
  const ack = await publish(eventSubject(tenant, envelope), JSON.stringify(envelope), { msgId: envelope.id });
  return { sequence: ack.seq, duplicate: ack.duplicate };
}

export async function subscribeEvents(
  js: JetStreamClient, stream: string, opts: SubscribeEventsOptions, handler: NotificationHandler,
  log: Logger, retryDelayMs: (attempt: number) => number = defaultRetryDelayMs,
): Promise<EventSubscription> {
  const filter = opts.filter ?? `${SUBJECT_ROOT.events}.>`;
  const consumer = await js.consumers.get(stream, {
    filter_subjects: filter,
    ...(opts.fromSequence !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, opts.fromSequence) }
      : { deliver_policy: DeliverPolicy.New }),
  });
  const messages: ConsumerMessages = await consumer.consume({ max_messages: 256 });
  let stopped = false;
  let last = 0;
  let retrying: { cancel: () => void } | null = null;
  let inHandler = false;

  const loop = async (): Promise<void> => {
    for await (const m of messages) {
      if (stopped) break;
      const n = {
        sequence: m.seq, subject: m.subject, msgId: m.headers?.get('Nats-Msg-Id') ?? '',
        envelope: m.json<EventEnvelope>(),
      };
      for (let attempt = 1; !stopped; attempt++) {
        try {
          inHandler = true;
          await handler(n);
          last = n.sequence;
          break;
        } catch (err) {
          if (stopped) break;
          log.error({ err, sequence: n.sequence }, `notification handler failed (attempt ${attempt}); retrying the same notification`);
          const d = cancellableDelay(retryDelayMs(attempt));
          retrying = d;
          await d.done;
          retrying = null;
        } finally {
          inHandler = false;
        }
      }
    }
  };
  const done = loop().catch((err: unknown) => log.error({ err }, 'notification subscription ended'));

  return {
    lastSequence: () => last,
    async close() {
      stopped = true;
      retrying?.cancel();
      const closing = messages.close();
      // From inside the handler, waiting would deadlock: the iterator ends only once the handler returns.
      if (!inHandler) await closing;
      else void closing.then(() => done);
    },
  };
}
