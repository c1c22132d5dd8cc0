/**
 * The bus port: commands (request → ack), work orders (at-least-once, explicit ack) and
 * notifications (an ordered, resumable, de-duplicated stream of event envelopes). Two adapters
 * hold the same contract (test/contract/bus.contract.ts): in-process (src/adapters/memory/bus.ts)
 * and NATS JetStream (src/adapters/nats/bus.ts).
 *
 * Subjects (NATS syntax; the in-process adapter matches the same way):
 *   ironclad.cmd.<partition>.<entity>                                  commands
 *   ironclad.reply.<msg id>                                            command replies (kept for retries)
 *   ironclad.work.<key>                                                work orders
 *   ironclad.events.<tenant>.<node|stack>.<entity>.<event type>        notifications
 * Every variable part goes through `subjectToken`, so a tenant or id can never add a token or a wildcard.
 */
import { DriverError } from './driver.js';

export const SUBJECT_ROOT = {
  commands: 'ironclad.cmd',
  replies: 'ironclad.reply',
  work: 'ironclad.work',
  events: 'ironclad.events',
} as const;

// ---------------------------------------------------------------------------------------------
// Subjects

const SAFE_CHAR = /[A-Za-z0-9_\-:=+@~!$&'(),;]/;

/**
 * Makes `value` one valid subject token, reversibly: any character outside a conservative safe
 * set (dots, wildcards, whitespace, `%`, non-ASCII...) is percent-encoded as UTF-8 bytes
 * (`decodeURIComponent` reverses it). Uuids and event type names pass unchanged.
 */
export function subjectToken(value: string): string {
  if (value.length === 0) return '%00';
  let out = '';
  for (const ch of value) {
    if (SAFE_CHAR.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * The partition that owns an entity: FNV-1a (32 bit) of the id's UTF-8 bytes, modulo `partitions`.
 * Stable across processes, versions and platforms (it is part of the wire contract: changing it
 * re-routes every entity).
 */
export function partitionOf(entityId: string, partitions: number): number {
  if (!Number.isInteger(partitions) || partitions < 1) throw new RangeError(`partitions must be a positive integer, got ${partitions}`);
  let h = 0x811c9dc5;
  for (const b of Buffer.from(entityId, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % partitions;
}

/** `ironclad.cmd.<partition>.<entity>` for an entity. */
export function commandSubject(entityId: string, partitions: number): string {
  return `${SUBJECT_ROOT.commands}.${partitionOf(entityId, partitions)}.${subjectToken(entityId)}`;
}

/** The pattern a partition owner serves (`ironclad.cmd.<p>.*`), or every command (`ironclad.cmd.>`). */
export function commandPattern(partition?: number): string {
  return partition === undefined ? `${SUBJECT_ROOT.commands}.>` : `${SUBJECT_ROOT.commands}.${partition}.*`;
}

export function replySubject(msgId: string): string {
  return `${SUBJECT_ROOT.replies}.${subjectToken(msgId)}`;
}

export function workSubject(key: string): string {
  return `${SUBJECT_ROOT.work}.${subjectToken(key)}`;
}

/** `ironclad.events.<tenant>.<entity_type>.<entity_id>.<type>` (api.md "Introspection, notifications"). */
export function eventSubject(tenant: string, e: Pick<EventEnvelope, 'entity_type' | 'entity_id' | 'type'>): string {
  return `${SUBJECT_ROOT.events}.${subjectToken(tenant)}.${subjectToken(e.entity_type)}.${subjectToken(e.entity_id)}.${subjectToken(e.type)}`;
}

/** A subject filter for notifications; every part left out is a wildcard. */
export function eventFilter(f: { tenant?: string; entity_type?: string; entity_id?: string; type?: string } = {}): string {
  const t = (v: string | undefined): string => (v === undefined ? '*' : subjectToken(v));
  if (f.tenant === undefined && f.entity_type === undefined && f.entity_id === undefined && f.type === undefined) return `${SUBJECT_ROOT.events}.>`;
  return `${SUBJECT_ROOT.events}.${t(f.tenant)}.${t(f.entity_type)}.${t(f.entity_id)}.${t(f.type)}`;
}

/** NATS subject matching: `*` matches one token, a final `>` one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i === p.length - 1 && s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

const COMMAND_SUBJECT = /^ironclad\.cmd\.\d+\.[^.*>\s]+$/;

/** Throws a TypeError unless `subject` is `ironclad.cmd.<partition>.<entity token>`. */
export function assertCommandSubject(subject: string): void {
  if (!COMMAND_SUBJECT.test(subject)) throw new TypeError(`not a command subject (ironclad.cmd.<partition>.<entity>): ${subject}`);
}

// ---------------------------------------------------------------------------------------------
// Commands

export interface CommandProblem {
  /** A stable error code (src/domain/errors.ts). */
  code: string;
  detail: string;
  [extension: string]: unknown;
}

/** The actor's ack: accepted with the task it created or re-used, or rejected with the problem. */
export type CommandReply =
  | { status: 'accepted'; task: Record<string, unknown>; position?: string | null }
  | { status: 'rejected'; problem: CommandProblem };

export interface RequestOptions {
  /**
   * The command's identity (Nats-Msg-Id). A request repeated with the same id within the
   * de-duplication window is not processed again: it answers with the first one's reply.
   */
  msgId: string;
  /** Bound on the whole request (publish + reply). */
  timeoutMs: number;
}

export interface IncomingCommand {
  subject: string;
  msgId: string;
  payload: unknown;
  /** 1 on the first delivery; more when an earlier handler died or failed before replying. */
  deliveryCount: number;
}

/**
 * Decides a command and returns the reply. A throw is a transient failure: the command is
 * delivered again later (so handlers must be idempotent per `msgId`).
 */
export type CommandHandler = (command: IncomingCommand) => Promise<CommandReply>;

/**
 * No reply within the timeout (or the broker did not confirm the publish). The command may still
 * be processed: retry with the SAME msgId to get its reply without processing it twice.
 */
export class BusTimeoutError extends Error {
  readonly code = 'bus_timeout';
  readonly kind = 'transient';
  readonly subject: string;
  readonly msgId: string;
  constructor(subject: string, msgId: string, timeoutMs: number, options?: { cause?: unknown }) {
    super(`no reply to command ${msgId} on ${subject} within ${timeoutMs} ms (retry with the same msgId)`, options);
    this.name = 'BusTimeoutError';
    this.subject = subject;
    this.msgId = msgId;
  }
}

// ---------------------------------------------------------------------------------------------
// Work

/** A work order: a JSON object derived from the event that starts an operation. */
export type WorkOrder = Record<string, unknown>;

export interface PublishWorkOptions {
  /** The id of the event the order derives from (Nats-Msg-Id): a re-publish is stored once. */
  msgId: string;
  /** The subject's last token (`ironclad.work.<key>`), e.g. the node id. Default: msgId. */
  key?: string;
}

export interface PublishAck {
  /** Stream sequence; for a duplicate, the sequence of the message already stored. */
  sequence: number;
  duplicate: boolean;
}

/**
 * One delivery of a work order. Settle it exactly once: `ack` (done), `nak(delayMs)` (transient
 * failure: deliver again after the delay) or `term` (permanent: never again). `working()` resets
 * the ack-wait timer of a long operation. An unsettled delivery is redelivered after the ack wait
 * (to any consumer) — this is how the work of a dead worker is taken over.
 */
export interface WorkDelivery {
  readonly order: WorkOrder;
  readonly msgId: string;
  readonly sequence: number;
  /** 1 on the first delivery. */
  readonly deliveryCount: number;
  ack(): Promise<void>;
  working(): void;
  nak(delayMs?: number): void;
  term(reason?: string): void;
}

/** A throw is mapped by `settlementFor` (nak with backoff, or term). */
export type WorkHandler = (delivery: WorkDelivery) => Promise<void> | void;

export interface ConsumeWorkOptions {
  /** Deliveries handled at once by this consumer. Default 1. */
  concurrency?: number;
}

export interface WorkBacklog {
  /** Stored, not yet delivered (or waiting for redelivery). */
  pending: number;
  /** Delivered, not yet settled. */
  inFlight: number;
}

export type Settlement = { action: 'nak'; delayMs: number } | { action: 'term'; reason: string };

const PERMANENT_KINDS = new Set(['validation', 'not_found', 'illegal_state', 'forbidden', 'unauthorized', 'unprocessable', 'permanent']);

/**
 * The one ack policy for a work handler that threw: a permanent error (a DriverError of kind
 * `permanent`, or an error whose `kind` says retrying cannot help) is terminated; anything else is
 * transient and naked with exponential backoff (1 s doubling, at most 60 s).
 */
export function settlementFor(err: unknown, deliveryCount: number): Settlement {
  const kind = err instanceof DriverError ? err.kind : (err as { kind?: unknown } | null)?.kind;
  if (typeof kind === 'string' && PERMANENT_KINDS.has(kind)) {
    return { action: 'term', reason: err instanceof Error ? err.message : String(err) };
  }
  return { action: 'nak', delayMs: Math.min(1000 * 2 ** Math.max(0, deliveryCount - 1), 60_000) };
}

// ---------------------------------------------------------------------------------------------
// Notifications

/** The public event envelope (api.md "Event envelope"): the body of every notification. */
export interface EventEnvelope {
  id: string;
  type: string;
  entity_type: string;
  entity_id: string;
  revision: number;
  position: string;
  time: string;
  data: Record<string, unknown>;
  metadata: {
    task_id: string | null;
    principal: string | null;
    request_id: string | null;
    correlation_id: string | null;
    causation_id: string | null;
  };
}

export interface Notification {
  /** Stream sequence (1-based, gap-free for one publisher); resume with `fromSequence: sequence + 1`. */
  sequence: number;
  subject: string;
  /** The Nats-Msg-Id it was published with (= envelope.id). */
  msgId: string;
  envelope: EventEnvelope;
}

export interface SubscribeEventsOptions {
  /** First sequence to deliver (inclusive; 1 = everything retained). Omitted: only notifications published from now on. */
  fromSequence?: number;
  /** A subject filter (see `eventFilter`). Default: every notification. */
  filter?: string;
}

/**
 * Called once per notification, in stream order, one at a time (the next waits for the
 * returned promise). A throw retries the SAME notification after a backoff: nothing is skipped.
 */
export type NotificationHandler = (n: Notification) => Promise<void> | void;

export interface BusSubscription {
  /** Stops delivery; once it resolves the handler is not called again. Safe from inside the handler. */
  close(): Promise<void>;
}

export interface EventSubscription extends BusSubscription {
  /** The sequence of the last notification the handler accepted (0 when none). */
  lastSequence(): number;
}

// ---------------------------------------------------------------------------------------------

export interface Bus {
  /** `in-process` or `jetstream` (shown by /readyz). */
  readonly kind: string;
  /** Publishes a command (with its msgId) and waits for the actor's reply. Throws BusTimeoutError. */
  request(subject: string, payload: unknown, options: RequestOptions): Promise<CommandReply>;
  /** Serves commands whose subject matches `pattern`; each command is handled by one server. */
  serveCommands(pattern: string, handler: CommandHandler): Promise<BusSubscription>;
  publishWork(order: WorkOrder, options: PublishWorkOptions): Promise<PublishAck>;
  /** Joins the shared work consumer: each order goes to one consumer at a time. */
  consumeWork(handler: WorkHandler, options?: ConsumeWorkOptions): Promise<BusSubscription>;
  workBacklog(): Promise<WorkBacklog>;
  /** Publishes to `eventSubject(tenant, envelope)` with msgId = envelope.id (stored once within the window). */
  publishEvent(envelope: EventEnvelope, options: { tenant: string }): Promise<PublishAck>;
  subscribeEvents(options: SubscribeEventsOptions, handler: NotificationHandler): Promise<EventSubscription>;
  /** Sequence of the newest stored notification (0 when none). */
  lastEventSequence(): Promise<number>;
  /** The newest stored notification, or null (none, or it was removed by the retention limits). */
  lastNotification(): Promise<Notification | null>;
  /** Resolves when the broker answers (readiness). */
  ping(): Promise<void>;
  /** Stops every consumer and subscription of this client; unsettled work is redelivered to others. */
  close(): Promise<void>;
}
