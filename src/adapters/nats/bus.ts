/**
 * The bus on NATS JetStream (@nats-io/transport-node + @nats-io/jetstream), held to the same
 * contract as the in-process bus (test/contract/bus.contract.ts).
 *
 * - Commands: published to IRONCLAD_CMD (work-queue retention) with Nats-Msg-Id; a durable pull
 *   consumer per served pattern hands each command to one server, which decides, stores its reply
 *   on IRONCLAD_REPLIES (`ironclad.reply.<msg id>`, last one per subject) and only then acks. The
 *   requester listens on that reply subject before publishing; when the publish is a duplicate it
 *   reads the stored reply, so a retry after a timeout returns the first outcome, never a second.
 * - Work: IRONCLAD_WORK (work-queue) and the shared durable consumer `workers`; explicit ack,
 *   working(), nak(delay), term; unsettled deliveries come back after ack_wait.
 * - Notifications: IRONCLAD_EVENTS (limits retention, duplicate window), see ./events.ts.
 * Streams and consumers come from deploy/nats/*.json and are set up idempotently at start.
 */
import { connect, TimeoutError, type Msg, type NatsConnection } from '@nats-io/transport-node';
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

export async function createNatsBus(options: NatsBusOptions): Promise<Bus> {
  const { log } = options;
  const apiTimeoutMs = options.apiTimeoutMs ?? 5_000;
  const nc = await connect({
    servers: options.servers.split(',').map((s) => s.trim()).filter(Boolean),
    name: options.name ?? 'ironclad',
    maxReconnectAttempts: -1,
    timeout: apiTimeoutMs,
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
  const owned = new Set<BusSubscription>();
  let closed = false;
  const track = <T extends BusSubscription>(s: T): T => {
    owned.add(s);
    const close = s.close.bind(s);
    s.close = async () => {
      owned.delete(s);
      await close();
    };
    return s;
  };
  const ensuredCommandConsumers = new Map<string, Promise<unknown>>();
  const termTakesReason = serverAtLeast(nc.info?.version, 2, 11);

  async function request(subject: string, payload: unknown, opts: RequestOptions): Promise<CommandReply> {
    assertCommandSubject(subject);
    const deadline = Date.now() + opts.timeoutMs;
    const left = (): number => Math.max(1, deadline - Date.now());
    const rs = replySubject(opts.msgId);
    // Subscribe before publishing: the reply cannot be published before the command is stored.
    const sub = nc.subscribe(rs, { max: 1 });
    let timer: NodeJS.Timeout | undefined;
    const first = (async (): Promise<Msg | null> => {
      for await (const m of sub) return m;
      return null;
    })();
    try {
      let ack;
      try {
        ack = await js.publish(subject, JSON.stringify(payload ?? null), { msgID: opts.msgId, timeout: left() });
      } catch (err) {
        if (err instanceof TimeoutError || Date.now() >= deadline) throw new BusTimeoutError(subject, opts.msgId, opts.timeoutMs, { cause: err });
        throw err;
      }
      if (ack.duplicate) {
        const stored = await jsm.streams.getMessage(defs.streams.replies.name, { last_by_subj: rs }).catch(() => null);
        if (stored) return stored.json<CommandReply>();
      }
      const timedOut = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), left())));
      const m = await Promise.race([first, timedOut]);
      if (!m) throw new BusTimeoutError(subject, opts.msgId, opts.timeoutMs);
      return m.json<CommandReply>();
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
    }
  }

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
    const loop = startPullLoop(consumer, options.commandConcurrency ?? 32, async (m: JsMsg) => {
      const msgId = m.headers?.get('Nats-Msg-Id') ?? String(m.seq);
      const heartbeat = setInterval(() => m.working(), heartbeatMs);
      try {
        const reply = await handler({ subject: m.subject, msgId, payload: m.json<unknown>(), deliveryCount: m.info.deliveryCount });
        // The reply is stored before the command is acked: a crash in between redelivers the
        // command (handlers are idempotent per msgId), never loses its outcome.
        await js.publish(replySubject(msgId), JSON.stringify(reply), { timeout: apiTimeoutMs });
        m.ack();
      } catch (err) {
        const s = settlementFor(err, m.info.deliveryCount);
        m.nak(s.action === 'nak' ? s.delayMs : 0);
        log.warn({ err, subject: m.subject, msg_id: msgId }, 'command handler failed; the command will be redelivered');
      } finally {
        clearInterval(heartbeat);
      }
    }, log, `commands ${pattern}`);
    return track({ close: () => loop.close() });
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
          await m.ackAck({ timeout: apiTimeoutMs });
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
      const ack = await js.publish(workSubject(opts.key ?? opts.msgId), JSON.stringify(order), { msgID: opts.msgId, timeout: apiTimeoutMs });
      return { sequence: ack.seq, duplicate: ack.duplicate };
    },
    consumeWork,
    async workBacklog() {
      const info = await jsm.consumers.info(defs.streams.work.name, defs.workers.durable_name);
      return { pending: info.num_pending, inFlight: info.num_ack_pending };
    },
    publishEvent: (envelope, opts) => publishEvent(js, envelope, opts.tenant, apiTimeoutMs),
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
      await Promise.all([...owned].map((s) => s.close().catch(() => undefined)));
      await nc.drain().catch(() => nc.close());
    },
  };
}
