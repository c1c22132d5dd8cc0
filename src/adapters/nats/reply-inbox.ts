/**
 * One reply inbox per connection (`_INBOX.<nuid>.<token>`, ONE wildcard subscription) for the
 * bus's own request/reply traffic: JetStream publish acks and the direct command replies
 * (./bus.ts). The client's `js.publish` does the same through its request mux, but builds two
 * Error objects (with stack traces) and a timer promise for every publish even when it succeeds;
 * that was about 10 % of a NATS-mode process's CPU. Here a publish is one PUB and one map entry.
 */
import { createInbox, headers as natsHeaders, TimeoutError, type MsgHdrs, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';

export interface Expected {
  /** Where the reply goes (use it as the reply subject or in a header). */
  subject: string;
  /** The first message on `subject`, or null once `cancel()` was called. */
  reply: Promise<Msg | null>;
  /** Stops waiting (always call it, in a `finally`). */
  cancel(): void;
}

export interface ReplyInbox {
  expect(): Expected;
}

export function createReplyInbox(nc: NatsConnection): ReplyInbox {
  const prefix = createInbox();
  const awaiting = new Map<string, (m: Msg | null) => void>();
  let sub: Subscription | null = null;
  let next = 0;
  return {
    expect() {
      sub ??= nc.subscribe(`${prefix}.*`, {
        callback: (err, m) => {
          if (err) return;
          const token = m.subject.slice(prefix.length + 1);
          const resolve = awaiting.get(token);
          awaiting.delete(token);
          resolve?.(m);
        },
      });
      const token = (++next).toString(36);
      let settle!: (m: Msg | null) => void;
      const reply = new Promise<Msg | null>((resolve) => (settle = resolve));
      awaiting.set(token, settle);
      return {
        subject: `${prefix}.${token}`,
        reply,
        cancel() {
          if (awaiting.delete(token)) settle(null);
        },
      };
    },
  };
}

/** `p`, or null after `ms`. */
export async function within<T>(p: Promise<T | null>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

export interface StoredAck {
  stream: string;
  seq: number;
  duplicate: boolean;
}

/**
 * A JetStream publish (what `js.publish` does: PUB with a reply subject, the stream answers with
 * its ack): throws TimeoutError without an answer within `timeoutMs`, JetStreamApiError when the
 * stream refused the message, an Error when no stream takes the subject.
 */
export async function publishStored(
  nc: NatsConnection, inbox: ReplyInbox, subject: string, body: string,
  opts: { msgId?: string; headers?: MsgHdrs; timeoutMs: number },
): Promise<StoredAck> {
  const h = opts.headers ?? (opts.msgId !== undefined ? natsHeaders() : undefined);
  if (opts.msgId !== undefined) h!.set('Nats-Msg-Id', opts.msgId);
  const e = inbox.expect();
  try {
    nc.publish(subject, body, { reply: e.subject, ...(h ? { headers: h } : {}) });
    const m = await within(e.reply, opts.timeoutMs);
    if (!m) throw new TimeoutError();
    if (m.data.length === 0 && m.headers?.code === 503) throw new Error(`no JetStream stream takes ${subject} (no responders)`);
    const r = m.json<{ stream?: string; seq?: number; duplicate?: boolean; error?: ApiError }>();
    if (r.error) throw new JetStreamApiError(r.error);
    if (!r.stream || typeof r.seq !== 'number') throw new Error(`invalid JetStream publish ack for ${subject}`);
    return { stream: r.stream, seq: r.seq, duplicate: r.duplicate ?? false };
  } finally {
    e.cancel();
  }
}

/**
 * `JsMsg.ackAck()` through the inbox: the ack, and the server's confirmation that it was recorded.
 * Throws TimeoutError without a confirmation within `timeoutMs` (the message may come back).
 */
export async function ackConfirmed(nc: NatsConnection, inbox: ReplyInbox, replySubject: string, timeoutMs: number): Promise<void> {
  const e = inbox.expect();
  try {
    nc.publish(replySubject, '+ACK', { reply: e.subject });
    if (!(await within(e.reply, timeoutMs))) throw new TimeoutError();
  } finally {
    e.cancel();
  }
}
