/**
 * The bus on NATS JetStream (@nats-io/transport-node + @nats-io/jetstream), held to the same
 * contract as the in-process bus (test/contract/bus.contract.ts).
 *
 * - Commands: published to IRONCLAD_CMD (work-queue retention) with Nats-Msg-Id; a durable pull
 *   consumer per served pattern hands each command to one server, which decides, stores its reply
 *   on IRONCLAD_REPLIES (`ironclad.reply.<msg id>`, last one per subject) and only then acks. The
 *   command carries `Ironclad-Reply-To`, a subject under this connection's one reply inbox (one
 *   subscription for all requests, not one per request): the server sends the stored reply there
 *   too. When the publish is a duplicate (a retry) the requester follows the stored reply subject
 *   instead, so a retry after a timeout returns the first outcome, never a second; a direct reply
 *   that never came (the server died after storing it) is read from the store before timing out.
 * - Work: IRONCLAD_WORK (work-queue) and the shared durable consumer `workers`; explicit ack,
 *   working(), nak(delay), term; unsettled deliveries come back after ack_wait.
 * - Notifications: IRONCLAD_EVENTS (limits retention, duplicate window), see ./events.ts.
 * Streams and consumers come from deploy/nats/*.json and are set up idempotently at start.
 */
import { subscriptionSet } from '../shared/subscriptions.js';
import { connect, headers, TimeoutError, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import {
  assertCommandSubject, BusTimeoutError, replySubject, settlementFor, workSubject,
  type Bus, type BusSubscription, type CommandHandler, type CommandReply, type ConsumeWorkOptions, type EventEnvelope, type EventSubscription,
  type PublishAck, type RequestOptions, type WorkDelivery, type WorkHandler,
} from '../../ports/bus.js';
import type { Logger } from '../../ports/logger.js';
import { resolveDefinitions, type NatsTuning, type ResolvedDefinitions } from './definitions.js';
import { publishEvent, subscribeEvents } from './events.js';
import { startPullLoop } from './pull-loop.js';
import { ackConfirmed, createReplyInbox, publishStored, within } from './reply-inbox.js';
import { ensureConsumer, ensureStream } from './setup.js';

export interface NatsBusOptions {
  /** NATS_URL: one URL or several separated by commas (`nats://a:4222,nats://b:4222`). */
  servers: string;
  /** Client name shown by the server (monitoring). */
  name?: string;
  log: Logger;
  /** Create/update streams and consumers at start (default true). `false` for read-only tools (`ironclad tail`). */
  setup?: boolean;
  tuning?: NatsTuning;
  /** Bound on each JetStream API call and publish ack. Default 5000 ms. */
  apiTimeoutMs?: number;
  /** Commands handled at once per served pattern. Default 32. */
  commandConcurrency?: number;
}

export class BusSetupError extends Error {}

/** Header of a command: where its server sends the reply (besides storing it). */
export const REPLY_TO_HEADER = 'Ironclad-Reply-To';

export async function createNatsBus(options: NatsBusOptions): Promise<Bus> {
  const { log } = options;
  const apiTimeoutMs = options.apiTimeoutMs ?? 5_000;
  const nc = await connect({
    servers: options.servers.split(',').map((s) => s.trim()).filter(Boolean),
    name: options.name ?? 'ironclad',
    maxReconnectAttempts: -1,
    timeout: apiTimeoutMs,
    // No Error (with its stack) built for every request and publish ack: it was ~14 % of the CPU.
    noAsyncTraces: true,
  }).catch((err: unknown) => {
    throw new BusSetupError(`cannot connect to NATS at ${options.servers}: ${(err as Error).message}`, { cause: err });
  });
  try {
    const jsm = await jetstreamManager(nc, { timeout: apiTimeoutMs });
    const js = jetstream(nc, { timeout: apiTimeoutMs });
    const defs = resolveDefinitions({ clustered: Boolean(nc.info?.cluster), tuning: options.tuning });
    if (options.setup ?? true) {
      for (const s of Object.values(defs.streams)) await ensureStream(jsm, s);
      await ensureConsumer(jsm, defs.streams.work.name, defs.workers);
    } else if (!(await streamExists(jsm, defs.streams.events.name))) {
      throw new BusSetupError(`stream ${defs.streams.events.name} does not exist on ${options.servers} (start Ironclad with NATS_URL set first)`);
    }
    return natsBus(nc, js, jsm, defs, options, apiTimeoutMs);
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw err;
  }
}

/** True when the server's version (`2.9.10`) is at least major.minor. */
export function serverAtLeast(version: string | undefined, major: number, minor: number): boolean {
  const [ma = 0, mi = 0] = (version ?? '0.0').split('.').map((x) => Number.parseInt(x, 10) || 0);
  return ma > major || (ma === major && mi >= minor);
}

async function streamExists(jsm: JetStreamManager, name: string): Promise<boolean> {
  try {
    await jsm.streams.info(name);
    return true;
  } catch {
    return false;
  }
}

function natsBus(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, defs: ResolvedDefinitions, options: NatsBusOptions, apiTimeoutMs: number): Bus {
  const { log } = options;
  const { track, closeAll } = subscriptionSet();
  let closed = false;
  const ensuredCommandConsumers = new Map<string, Promise<unknown>>();
  const termTakesReason = serverAtLeast(nc.info?.version, 2, 11);

  /** One wildcard subscription receives the publish acks and the direct replies of this connection. */
  const inbox = createReplyInbox(nc);
  const publishAcked = (subject: string, body: string, o: { msgId?: string; headers?: MsgHdrs } = {}) =>
    publishStored(nc, inbox, subject, body, { ...o, timeoutMs: apiTimeoutMs });
  /** The reply stored for a command, or null (none yet, or the store did not answer within `ms`). */
  const storedReply = async (rs: string, ms: number): Promise<CommandReply | null> => {
    const stored = await within(jsm.streams.getMessage(defs.streams.replies.name, { last_by_subj: rs }).catch(() => null), ms);
    return stored ? stored.json<CommandReply>() : null;
  };

  async function request(subject: string, payload: unknown, opts: RequestOptions): Promise<CommandReply> {
    assertCommandSubject(subject);
    const deadline = Date.now() + opts.timeoutMs;
    const left = (): number => Math.max(1, deadline - Date.now());
    const rs = replySubject(opts.msgId);
    // Expected before publishing: the reply cannot be sent before the command is stored.
    const direct = inbox.expect();
    try {
      const h = headers();
      h.set(REPLY_TO_HEADER, direct.subject);
      let ack;
      try {
        ack = await publishStored(nc, inbox, subject, JSON.stringify(payload ?? null), { msgId: opts.msgId, headers: h, timeoutMs: left() });
      } catch (err) {
        if (err instanceof TimeoutError || Date.now() >= deadline) throw new BusTimeoutError(subject, opts.msgId, opts.timeoutMs, { cause: err });
        throw err;
      }
      // A duplicate (a retry): the first publisher's inbox gets the direct reply; follow the stored one.
      if (ack.duplicate) return await followStoredReply(subject, rs, opts, left);
      const m = await within(direct.reply, left());
      if (m) return m.json<CommandReply>();
      // Stored but not sent (the server died in between), or sent while this connection was down.
      const stored = await storedReply(rs, Math.min(1_000, apiTimeoutMs));
      if (stored) return stored;
      throw new BusTimeoutError(subject, opts.msgId, opts.timeoutMs);
    } finally {
      direct.cancel();
    }
  }

  /** A duplicate publish (a retry): the stored reply, or the one still to be stored, until the deadline. */
  async function followStoredReply(subject: string, rs: string, opts: RequestOptions, left: () => number): Promise<CommandReply> {
    // Subscribe before reading the store: a reply stored in between is either read or received.
    const sub = nc.subscribe(rs, { max: 1 });
    const first = (async (): Promise<Msg | null> => {
      for await (const m of sub) return m;
      return null;
    })();
    try {
      const stored = await storedReply(rs, left());
      if (stored) return stored;
      const m = await within(first, left());
      if (m) return m.json<CommandReply>();
      const late = await storedReply(rs, Math.min(1_000, apiTimeoutMs));
      if (late) return late;
      throw new BusTimeoutError(subject, opts.msgId, opts.timeoutMs);
    } finally {
      sub.unsubscribe();
    }
  }

  /** The stored reply, sent to the requester's inbox too (best effort: the requester can read the store). */
  const sendDirect = (to: string | undefined, body: string): void => {
    if (!to) return; // a requester of an earlier version listens on the reply subject itself
    try {
      nc.publish(to, body);
    } catch (err) {
      log.warn({ err, reply_to: to }, 'cannot send a command reply to its requester (it reads the stored reply)');
    }
  };

  async function serveCommands(pattern: string, handler: CommandHandler): Promise<BusSubscription> {
    const def = defs.commandConsumer(pattern);
    let ensured = ensuredCommandConsumers.get(def.durable_name);
    if (!ensured) {
      ensured = ensureConsumer(jsm, defs.streams.commands.name, def);
      ensuredCommandConsumers.set(def.durable_name, ensured);
      ensured.catch(() => ensuredCommandConsumers.delete(def.durable_name));
    }
    await ensured;
    const consumer = await js.consumers.get(defs.streams.commands.name, def.durable_name);
    const heartbeatMs = Math.max(100, Math.floor((def.ack_wait ?? 30e9) / 1e6 / 3));
    // One timer for every command being handled (not one per command): working() for those
    // that have been running for a heartbeat interval or more.
    const handling = new Map<JsMsg, number>();
    const heartbeat = setInterval(() => {
      const due = Date.now() - heartbeatMs;
      for (const [m, since] of handling) if (since <= due) m.working();
    }, heartbeatMs);
    heartbeat.unref();
    const loop = startPullLoop(consumer, options.commandConcurrency ?? 32, async (m: JsMsg) => {
      const msgId = m.headers?.get('Nats-Msg-Id') ?? String(m.seq);
      handling.set(m, Date.now());
      try {
        const reply = await handler({ subject: m.subject, msgId, payload: m.json<unknown>(), deliveryCount: m.info.deliveryCount });
        // The reply is stored before the command is acked: a crash in between redelivers the
        // command (handlers are idempotent per msgId), never loses its outcome.
        const body = JSON.stringify(reply);
        await publishAcked(replySubject(msgId), body);
        sendDirect(m.headers?.get(REPLY_TO_HEADER), body);
        m.ack();
      } catch (err) {
        const s = settlementFor(err, m.info.deliveryCount);
        m.nak(s.action === 'nak' ? s.delayMs : 0);
        log.warn({ err, subject: m.subject, msg_id: msgId }, 'command handler failed; the command will be redelivered');
      } finally {
        handling.delete(m);
      }
    }, log, `commands ${pattern}`);
    return track({
      async close() {
        await loop.close();
        clearInterval(heartbeat);
      },
    });
  }

  async function consumeWork(handler: WorkHandler, opts: ConsumeWorkOptions = {}): Promise<BusSubscription> {
    const consumer = await js.consumers.get(defs.streams.work.name, defs.workers.durable_name);
    const loop = startPullLoop(consumer, opts.concurrency ?? 1, async (m: JsMsg) => {
      let settled = false;
      const once = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        fn();
      };
      const delivery: WorkDelivery = {
        order: m.json<Record<string, unknown>>(),
        msgId: m.headers?.get('Nats-Msg-Id') ?? String(m.seq),
        sequence: m.seq,
        deliveryCount: m.info.deliveryCount,
        async ack() {
          if (settled) return;
          settled = true;
          const to = (m as { reply?: unknown }).reply; // JsMsgImpl's subject for acks (not on the JsMsg interface)
          if (typeof to === 'string' && to !== '') await ackConfirmed(nc, inbox, to, apiTimeoutMs);
          else await m.ackAck({ timeout: apiTimeoutMs });
        },
        working: () => void (!settled && m.working()),
        nak: (delayMs) => once(() => m.nak(delayMs)),
        // Servers before 2.11 ignore a "+TERM <reason>" ack entirely: send the reason only where it is understood.
        term: (reason) => once(() => (termTakesReason ? m.term(reason) : m.term())),
      };
      try {
        await handler(delivery);
      } catch (err) {
        const s = settlementFor(err, m.info.deliveryCount);
        if (s.action === 'term') delivery.term(s.reason);
        else delivery.nak(s.delayMs);
      }
    }, log, 'work');
    return track({ close: () => loop.close() });
  }

  return {
    kind: 'jetstream',
    request,
    serveCommands,
    async publishWork(order, opts): Promise<PublishAck> {
      const ack = await publishAcked(workSubject(opts.key ?? opts.msgId), JSON.stringify(order), { msgId: opts.msgId });
      return { sequence: ack.seq, duplicate: ack.duplicate };
    },
    consumeWork,
    async workBacklog() {
      const info = await jsm.consumers.info(defs.streams.work.name, defs.workers.durable_name);
      return { pending: info.num_pending, inFlight: info.num_ack_pending };
    },
    publishEvent: (envelope, opts) => publishEvent(publishAcked, envelope, opts.tenant),
    async subscribeEvents(opts, handler): Promise<EventSubscription> {
      return track(await subscribeEvents(js, defs.streams.events.name, opts, handler, log));
    },
    async lastEventSequence() {
      return (await jsm.streams.info(defs.streams.events.name)).state.last_seq;
    },
    async lastNotification() {
      const stream = defs.streams.events.name;
      const seq = (await jsm.streams.info(stream)).state.last_seq;
      const m = seq > 0 ? await jsm.streams.getMessage(stream, { seq }).catch(() => null) : null;
      return m ? { sequence: m.seq, subject: m.subject, msgId: m.header.get('Nats-Msg-Id'), envelope: m.json<EventEnvelope>() } : null;
    },
    async ping() {
      await jsm.getAccountInfo();
    },
    async close() {
      if (closed) return;
      closed = true;
      await closeAll();
      await nc.drain().catch(() => nc.close());
    },
  };
}
