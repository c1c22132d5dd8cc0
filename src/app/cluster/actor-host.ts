/**
 * The receiving side of commands in NATS mode: serves `ironclad.cmd.<p>.*` for exactly the
 * partitions this process holds (./leases.ts), decides each command on the local actor and
 * replies with everything the caller needs (./command-router.ts).
 *
 * - On acquiring a partition: evict whatever the actor cache holds for it (another process wrote
 *   meanwhile), then serve its commands.
 * - On losing one: stop pulling its commands first, then evict its actors. A command already in
 *   a mailbox is stopped by the runtime's guard (`ownsEntity` before each decision), replies
 *   nothing and is redelivered — to the new owner.
 * - A rejection (an IroncladError: not found, invalid state, conflict...) is a reply; any other
 *   throw is transient: the command is not acked and comes back (bounded by the consumer's max_deliver).
 * - A command delivered again (the previous holder died between its append and its reply), or
 *   one carrying an Idempotency-Key, is first looked up in the entity's recent events by its
 *   command id (event metadata `command_id`): when found, the reply is rebuilt from the log, so
 *   it is never decided twice even after the broker's de-duplication window.
 */
import { IroncladError } from '../../domain/errors.js';
import { SYSTEM, type Principal } from '../../domain/principal.js';
import { commandPattern, partitionOf, type Bus, type BusSubscription, type CommandReply, type IncomingCommand } from '../../ports/bus.js';
import type { Logger } from '../../ports/logger.js';
import type { AcceptedReply, CommandEnvelope, EntityKind, RoutedMeta } from './command-router.js';
import type { Ownership } from './ownership.js';

/** This process does not (or no longer) hold the entity's partition: transient, the command is redelivered. */
export class NotOwnerError extends Error {
  readonly code = 'not_owner';
  readonly kind = 'transient';
  constructor(entity: string) {
    super(`this process does not hold the partition of ${entity}; the command goes to its owner`);
    this.name = 'NotOwnerError';
  }
}

export interface HostedMeta extends RoutedMeta {
  /** The command's Nats-Msg-Id, recorded in the metadata of the events it appends. */
  command_id: string;
}

export interface EntityHandler<R = unknown> {
  /** Decides the command locally (the service's local send). */
  decide(principal: Principal, entity: string, command: unknown, meta: HostedMeta): Promise<R>;
  /** The outcome of a command already applied (found by its command id), or null. */
  applied?(entity: string, commandId: string): Promise<R | null>;
  /** Drops cached actors (the runtime's evict). */
  evict(which: (id: string) => boolean): void;
  /** The task and position to put in the reply's standard fields. */
  summary(result: R): { task: Record<string, unknown> | null; position: string | null };
}

export interface ActorHostDeps {
  bus: Bus;
  ownership: Ownership;
  log: Logger;
}

export interface ActorHost {
  register<R>(kind: EntityKind, handler: EntityHandler<R>): void;
  /** Serves the owned partitions and follows ownership changes. */
  start(): Promise<void>;
  /** Partitions being served now. */
  serving(): number[];
  stop(): Promise<void>;
}

/** The principal as sent: SYSTEM keeps its identity (services compare it by reference). */
const principalOf = (p: Principal): Principal => (p.id === SYSTEM.id && p.tenant === SYSTEM.tenant ? SYSTEM : p);

export function createActorHost(deps: ActorHostDeps): ActorHost {
  const { bus, ownership, log } = deps;
  const handlers = new Map<EntityKind, EntityHandler>();
  const subs = new Map<number, Promise<BusSubscription | null>>();
  let unsubscribe: (() => void) | null = null;
  let stopped = false;

  const evictPartition = (p: number): void => {
    for (const h of handlers.values()) h.evict((id) => partitionOf(id, ownership.partitions) === p);
  };

  async function handle(c: IncomingCommand): Promise<CommandReply> {
    const env = c.payload as CommandEnvelope;
    const handler = handlers.get(env.kind);
    if (!handler) throw new Error(`no handler for ${env.kind} commands in this process`);
    if (!ownership.ownsEntity(env.entity)) throw new NotOwnerError(env.entity);
    const accepted = (result: unknown): CommandReply => {
      const s = handler.summary(result);
      const reply: AcceptedReply<unknown> = { status: 'accepted', task: s.task ?? {}, position: s.position, result };
      return reply;
    };
    if (handler.applied && (c.deliveryCount > 1 || env.meta.idempotency_key !== null)) {
      const done = await handler.applied(env.entity, c.msgId);
      if (done !== null) return accepted(done);
    }
    try {
      return accepted(await handler.decide(principalOf(env.principal), env.entity, env.command, { ...env.meta, command_id: c.msgId }));
    } catch (err) {
      if (!(err instanceof IroncladError)) throw err;
      return { status: 'rejected', problem: { ...err.extensions, code: err.code, detail: err.message } };
    }
  }

  function serve(p: number): void {
    if (subs.has(p) || stopped) return;
    evictPartition(p);
    const sub = bus.serveCommands(commandPattern(p), handle).catch((err: unknown) => {
      log.error({ err, partition: p }, 'cannot serve the commands of an owned partition');
      subs.delete(p);
      return null;
    });
    subs.set(p, sub);
  }

  async function unserve(p: number): Promise<void> {
    const sub = subs.get(p);
    subs.delete(p);
    evictPartition(p);
    await (await sub)?.close();
    evictPartition(p); // anything a last in-flight command cached
  }

  return {
    register(kind, handler) {
      handlers.set(kind, handler as EntityHandler);
    },
    async start() {
      stopped = false;
      unsubscribe ??= ownership.onChange((acquired, lost) => {
        for (const p of lost) void unserve(p).catch((err: unknown) => log.warn({ err, partition: p }, 'closing a lost partition failed'));
        for (const p of acquired) serve(p);
      });
      for (const p of ownership.owned()) serve(p);
      await Promise.all(subs.values());
    },
    serving: () => [...subs.keys()].sort((a, b) => a - b),
    async stop() {
      stopped = true;
      unsubscribe?.();
      unsubscribe = null;
      await Promise.all([...subs.keys()].map((p) => unserve(p)));
    },
  };
}
