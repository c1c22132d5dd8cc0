/**
 * The in-process bus: a first-class adapter held to the same contract as JetStream
 * (test/contract/bus.contract.ts), used by the embedded mode and the fast tests.
 *
 * A broker holds the state a NATS server would (command and work queues, stored replies, the
 * notification log); `broker.connect()` returns a Bus client, and several clients of one broker
 * behave like several processes on one server (closing a client is a process dying: its
 * unsettled work is redelivered to the others after the ack wait). Payloads cross as JSON text.
 */
import { subscriptionSet } from '../shared/subscriptions.js';
import type { Clock } from '../../ports/clock.js';
import {
  assertCommandSubject, BusTimeoutError, replySubject, settlementFor, subjectMatches, eventSubject, workSubject, SUBJECT_ROOT,
  type Bus, type BusSubscription, type CommandHandler, type CommandReply, type ConsumeWorkOptions, type EventEnvelope,
  type EventSubscription, type Notification, type NotificationHandler, type PublishAck, type RequestOptions,
  type SubscribeEventsOptions, type WorkDelivery, type WorkHandler,
} from '../../ports/bus.js';
import { createSystemClock } from '../system/clock.js';
import { cancellableDelay, defaultRetryDelayMs } from '../shared/catch-up-subscription.js';
import { createMemoryQueue, type QueueConsumer, type QueueDelivery } from './bus-queue.js';

export interface MemoryBrokerOptions {
  clock?: Clock;
  /** Window in which a repeated msgId is recognised (commands, work, notifications). Default 2 min. */
  duplicateWindowMs?: number;
  /** How long a command's reply is kept for retries with the same msgId. Default 10 min. */
  replyRetentionMs?: number;
  workAckWaitMs?: number;
  workMaxDeliver?: number;
  commandAckWaitMs?: number;
  commandMaxDeliver?: number;
  /** Delay before retrying a notification handler that threw (attempt is 1-based). */
  retryDelayMs?: (attempt: number) => number;
  logError?: (message: string, error: unknown) => void;
}

interface StoredNotification {
  sequence: number;
  subject: string;
  msgId: string;
  body: string;
}

export function createMemoryBroker(options: MemoryBrokerOptions = {}) {
  const clock = options.clock ?? createSystemClock();
  const window = options.duplicateWindowMs ?? 120_000;
  const replyRetentionMs = options.replyRetentionMs ?? 600_000;
  const retryDelayMs = options.retryDelayMs ?? defaultRetryDelayMs;
  const logError = options.logError ?? ((m: string, e: unknown) => console.error(m, e));
  const commands = createMemoryQueue(clock, { ackWaitMs: options.commandAckWaitMs ?? 30_000, maxDeliver: options.commandMaxDeliver ?? 5, duplicateWindowMs: window });
  const work = createMemoryQueue(clock, { ackWaitMs: options.workAckWaitMs ?? 60_000, maxDeliver: options.workMaxDeliver ?? 20, duplicateWindowMs: window });
  const replies = new Map<string, { reply: string; expiresAt: number }>();
  const replyWaiters = new Map<string, Set<(reply: string) => void>>();
  const log: StoredNotification[] = [];
  const logSeen = new Map<string, { seq: number; expiresAt: number }>();
  const wakers = new Set<() => void>();

  function storeReply(subject: string, reply: string): void {
    const now = clock.now();
    for (const [k, v] of replies) if (v.expiresAt <= now) replies.delete(k);
    replies.set(subject, { reply, expiresAt: now + replyRetentionMs });
    for (const w of replyWaiters.get(subject) ?? []) w(reply);
  }

  function storedReply(subject: string): string | null {
    const r = replies.get(subject);
    return r && r.expiresAt > clock.now() ? r.reply : null;
  }

  function appendNotification(subject: string, msgId: string, body: string): PublishAck {
    const now = clock.now();
    for (const [id, e] of logSeen) {
      if (e.expiresAt > now) break;
      logSeen.delete(id);
    }
    const dup = logSeen.get(msgId);
    if (dup) return { sequence: dup.seq, duplicate: true };
    const sequence = log.length + 1;
    log.push({ sequence, subject, msgId, body });
    logSeen.set(msgId, { seq: sequence, expiresAt: now + window });
    for (const wake of [...wakers]) wake();
    return { sequence, duplicate: false };
  }

  /** A client: what one process holds. */
  function connect(): Bus {
    let closed = false;
    const { track, closeAll } = subscriptionSet();
    const assertOpen = (): void => {
      if (closed) throw new Error('bus client is closed');
    };

    async function request(subject: string, payload: unknown, opts: RequestOptions): Promise<CommandReply> {
      assertOpen();
      assertCommandSubject(subject);
      const rs = replySubject(opts.msgId);
      const body = JSON.stringify(payload ?? null);
      return new Promise<CommandReply>((resolve, reject) => {
        let cancelTimer = (): void => undefined;
        const waiter = (reply: string): void => {
          cancelTimer();
          replyWaiters.get(rs)?.delete(waiter);
          resolve(JSON.parse(reply) as CommandReply);
        };
        const set = replyWaiters.get(rs) ?? new Set();
        replyWaiters.set(rs, set);
        set.add(waiter);
        cancelTimer = clock.setTimeout(() => {
          set.delete(waiter);
          if (set.size === 0) replyWaiters.delete(rs);
          reject(new BusTimeoutError(subject, opts.msgId, opts.timeoutMs));
        }, opts.timeoutMs);
        const ack = commands.publish(subject, opts.msgId, body);
        const stored = ack.duplicate ? storedReply(rs) : null;
        if (stored !== null) waiter(stored);
      });
    }

    async function serveCommands(pattern: string, handler: CommandHandler): Promise<BusSubscription> {
      assertOpen();
      const consumer = commands.consume(pattern, 32, async (d: QueueDelivery) => {
        const m = d.message;
        const heartbeat = setInterval(() => d.working(), Math.max(10, Math.floor((options.commandAckWaitMs ?? 30_000) / 3)));
        heartbeat.unref?.();
        try {
          const reply = await handler({ subject: m.subject, msgId: m.msgId, payload: JSON.parse(m.body), deliveryCount: d.deliveryCount });
          storeReply(replySubject(m.msgId), JSON.stringify(reply));
          d.ack();
        } catch (err) {
          const s = settlementFor(err, d.deliveryCount);
          d.nak(s.action === 'nak' ? s.delayMs : 0);
        } finally {
          clearInterval(heartbeat);
        }
      });
      return track(closeable(consumer));
    }

    async function publishWork(order: Record<string, unknown>, opts: { msgId: string; key?: string }): Promise<PublishAck> {
      assertOpen();
      return work.publish(workSubject(opts.key ?? opts.msgId), opts.msgId, JSON.stringify(order));
    }

    async function consumeWork(handler: WorkHandler, opts: ConsumeWorkOptions = {}): Promise<BusSubscription> {
      assertOpen();
      const consumer = work.consume(`${SUBJECT_ROOT.work}.>`, opts.concurrency ?? 1, async (d: QueueDelivery) => {
        const m = d.message;
        let settled = false;
        const once = (fn: () => void): void => {
          if (settled) return;
          settled = true;
          fn();
        };
        const delivery: WorkDelivery = {
          order: JSON.parse(m.body) as Record<string, unknown>, msgId: m.msgId, sequence: m.seq, deliveryCount: d.deliveryCount,
          ack: async () => once(() => d.ack()),
          working: () => void (!settled && d.working()),
          nak: (delayMs) => once(() => d.nak(delayMs)),
          term: () => once(() => d.term()),
        };
        try {
          await handler(delivery);
        } catch (err) {
          const s = settlementFor(err, d.deliveryCount);
          if (s.action === 'term') delivery.term(s.reason);
          else delivery.nak(s.delayMs);
        }
      });
      return track(closeable(consumer));
    }

    async function subscribeEvents(opts: SubscribeEventsOptions, handler: NotificationHandler): Promise<EventSubscription> {
      assertOpen();
      const filter = opts.filter ?? `${SUBJECT_ROOT.events}.>`;
      let cursor = opts.fromSequence ?? log.length + 1; // next sequence to look at
      let last = 0;
      let stopped = false;
      let wake: (() => void) | null = null;
      let retrying: { cancel: () => void } | null = null;
      const waker = (): void => wake?.();
      wakers.add(waker);
      const loop = async (): Promise<void> => {
        while (!stopped) {
          let next: StoredNotification | undefined;
          for (let i = Math.max(0, cursor - 1); i < log.length && !next; i++) if (subjectMatches(filter, log[i]!.subject)) next = log[i];
          if (!next) {
            cursor = log.length + 1;
            await new Promise<void>((resolve) => (wake = resolve));
            wake = null;
            continue;
          }
          const n: Notification = { sequence: next.sequence, subject: next.subject, msgId: next.msgId, envelope: JSON.parse(next.body) as EventEnvelope };
          for (let attempt = 1; !stopped; attempt++) {
            try {
              await handler(n);
              last = n.sequence;
              break;
            } catch (err) {
              if (stopped) break;
              logError(`bus: notification handler failed on sequence ${n.sequence} (attempt ${attempt}); retrying`, err);
              const delay = cancellableDelay(retryDelayMs(attempt));
              retrying = delay;
              await delay.done;
              retrying = null;
            }
          }
          cursor = n.sequence + 1;
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      };
      void loop();
      return track({
        lastSequence: () => last,
        async close() {
          stopped = true;
          wakers.delete(waker);
          retrying?.cancel();
          wake?.();
        },
      });
    }

    return {
      kind: 'in-process',
      request,
      serveCommands,
      publishWork,
      consumeWork,
      workBacklog: async () => work.backlog(),
      async publishEvent(envelope: EventEnvelope, opts: { tenant: string }) {
        assertOpen();
        return appendNotification(eventSubject(opts.tenant, envelope), envelope.id, JSON.stringify(envelope));
      },
      subscribeEvents,
      lastEventSequence: async () => log.length,
      async lastNotification() {
        const n = log[log.length - 1];
        return n ? { sequence: n.sequence, subject: n.subject, msgId: n.msgId, envelope: JSON.parse(n.body) as EventEnvelope } : null;
      },
      ping: async () => assertOpen(),
      async close() {
        if (closed) return;
        closed = true;
        await closeAll();
      },
    };
  }

  return {
    connect,
    /** Stops every timer of the broker (call after the clients are closed). */
    stop(): void {
      commands.stop();
      work.stop();
    },
  };
}

export type MemoryBroker = ReturnType<typeof createMemoryBroker>;

/** A single-process in-process bus (the embedded default). */
export function createMemoryBus(options: MemoryBrokerOptions = {}): Bus {
  return createMemoryBroker(options).connect();
}

function closeable(c: QueueConsumer): BusSubscription {
  return { close: async () => c.close() };
}
