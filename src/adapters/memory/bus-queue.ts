/**
 * An in-process work-queue stream with one shared, explicitly acknowledged consumer: the
 * JetStream semantics the in-process bus needs for commands and work orders.
 * - publish de-duplicates by msgId within a window (a duplicate answers the stored sequence);
 * - a message goes to one consumer at a time (consumers filter by subject, round robin);
 * - an unsettled delivery is redelivered after the ack wait, to any live consumer;
 * - `working()` restarts the ack wait; `nak(delay)` redelivers after the delay; `ack`/`term` remove it;
 * - after `maxDeliver` deliveries a message is no longer delivered (it stays counted in `exhausted`).
 * Time comes from the injected clock, so a test can move it by hand.
 */
import type { Clock } from '../../ports/clock.js';
import { subjectMatches, type PublishAck, type WorkBacklog } from '../../ports/bus.js';

export interface QueueSettings {
  ackWaitMs: number;
  maxDeliver: number;
  duplicateWindowMs: number;
}

export interface QueueMessage {
  readonly seq: number;
  readonly subject: string;
  readonly msgId: string;
  /** JSON text, parsed afresh for each delivery (no shared references, as over a wire). */
  readonly body: string;
  deliveries: number;
  state: 'ready' | 'inflight' | 'delayed';
  /** Identifies the current delivery; settlements of an older delivery (except ack/term) are ignored. */
  token: number;
  cancelTimer: (() => void) | null;
}

export interface QueueDelivery {
  readonly message: QueueMessage;
  readonly deliveryCount: number;
  ack(): void;
  working(): void;
  nak(delayMs?: number): void;
  term(): void;
}

export interface QueueConsumer {
  close(): void;
}

interface ConsumerSlot {
  filter: string;
  concurrency: number;
  running: number;
  closed: boolean;
  deliver: (d: QueueDelivery) => Promise<void>;
}

export function createMemoryQueue(clock: Clock, settings: QueueSettings) {
  const messages = new Map<number, QueueMessage>(); // insertion order = sequence order
  const seen = new Map<string, { seq: number; expiresAt: number }>();
  const consumers: ConsumerSlot[] = [];
  let lastSeq = 0;
  let nextToken = 0;
  let rr = 0;
  let exhausted = 0;
  let pumping = false;
  let again = false;

  function pruneSeen(now: number): void {
    for (const [id, entry] of seen) {
      if (entry.expiresAt > now) break; // insertion order is expiry order
      seen.delete(id);
    }
  }

  function publish(subject: string, msgId: string, body: string): PublishAck {
    const now = clock.now();
    pruneSeen(now);
    const dup = seen.get(msgId);
    if (dup) return { sequence: dup.seq, duplicate: true };
    const seq = ++lastSeq;
    seen.set(msgId, { seq, expiresAt: now + settings.duplicateWindowMs });
    messages.set(seq, { seq, subject, msgId, body, deliveries: 0, state: 'ready', token: 0, cancelTimer: null });
    queueMicrotask(pump);
    return { sequence: seq, duplicate: false };
  }

  function release(m: QueueMessage): void {
    m.cancelTimer?.();
    m.cancelTimer = null;
    if (m.deliveries >= settings.maxDeliver) {
      messages.delete(m.seq);
      exhausted++;
      return;
    }
    m.state = 'ready';
    pump();
  }

  function remove(m: QueueMessage): void {
    m.cancelTimer?.();
    m.cancelTimer = null;
    messages.delete(m.seq);
  }

  function armAckWait(m: QueueMessage, token: number): void {
    m.cancelTimer?.();
    m.cancelTimer = clock.setTimeout(() => {
      if (messages.get(m.seq) === m && m.state === 'inflight' && m.token === token) release(m);
    }, settings.ackWaitMs);
  }

  function pickConsumer(subject: string): ConsumerSlot | null {
    for (let i = 0; i < consumers.length; i++) {
      const c = consumers[(rr + i) % consumers.length]!;
      if (!c.closed && c.running < c.concurrency && subjectMatches(c.filter, subject)) {
        rr = (rr + i + 1) % consumers.length;
        return c;
      }
    }
    return null;
  }

  function deliver(m: QueueMessage, c: ConsumerSlot): void {
    const token = ++nextToken;
    m.token = token;
    m.state = 'inflight';
    m.deliveries++;
    armAckWait(m, token);
    const current = (): boolean => messages.get(m.seq) === m && m.token === token;
    const d: QueueDelivery = {
      message: m,
      deliveryCount: m.deliveries,
      ack: () => void (messages.get(m.seq) === m && remove(m)),
      term: () => void (messages.get(m.seq) === m && remove(m)),
      working: () => void (current() && m.state === 'inflight' && armAckWait(m, token)),
      nak(delayMs = 0) {
        if (!current() || m.state !== 'inflight') return;
        m.cancelTimer?.();
        if (delayMs <= 0) return release(m);
        m.state = 'delayed';
        m.cancelTimer = clock.setTimeout(() => void (current() && m.state === 'delayed' && release(m)), delayMs);
      },
    };
    c.running++;
    void c.deliver(d).finally(() => {
      c.running--;
      pump();
    });
  }

  /** Hands every ready message to a free consumer, in sequence order. Re-entrant calls re-run the scan. */
  function pump(): void {
    if (pumping) {
      again = true;
      return;
    }
    pumping = true;
    try {
      do {
        again = false;
        for (const m of messages.values()) {
          if (m.state !== 'ready') continue;
          const c = pickConsumer(m.subject);
          if (c) deliver(m, c);
        }
      } while (again);
    } finally {
      pumping = false;
    }
  }

  return {
    publish,
    /** Adds a consumer; `deliver` runs the handler and resolves when it has returned. */
    consume(filter: string, concurrency: number, deliverFn: (d: QueueDelivery) => Promise<void>): QueueConsumer {
      const slot: ConsumerSlot = { filter, concurrency: Math.max(1, concurrency), running: 0, closed: false, deliver: deliverFn };
      consumers.push(slot);
      queueMicrotask(pump);
      return {
        close() {
          slot.closed = true;
          const i = consumers.indexOf(slot);
          if (i >= 0) consumers.splice(i, 1);
        },
      };
    },
    backlog(): WorkBacklog {
      let pending = 0;
      let inFlight = 0;
      for (const m of messages.values()) {
        if (m.state === 'ready') pending++;
        else inFlight++;
      }
      return { pending, inFlight };
    },
    exhausted: () => exhausted,
    /** Cancels every timer (the broker is going away). */
    stop(): void {
      for (const m of messages.values()) m.cancelTimer?.();
      consumers.length = 0;
    },
  };
}

export type MemoryQueue = ReturnType<typeof createMemoryQueue>;
