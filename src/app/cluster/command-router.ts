/**
 * The sending side of commands in NATS mode: instead of deciding locally, a service's `send`
 * publishes the command to `ironclad.cmd.<partition>.<entity>` and waits for the reply of the
 * process holding that partition's lease (./actor-host.ts). Generic over the entity kind, so node
 * and stack services route the same way.
 *
 * The command's identity (Nats-Msg-Id) is what makes a retry safe:
 *   - with an Idempotency-Key: a hash of (tenant, key, kind, entity, command type), so the client's
 *     retry of a request that timed out is the SAME command: the bus answers it with the first
 *     one's reply (or waits for it) instead of deciding it twice;
 *   - without one: a new id per call (two identical requests without a key are two commands).
 *
 * No reply within `timeoutMs` → 503 `overloaded` with `reason: command_not_confirmed` and
 * Retry-After (api.md's codes are a closed list). The command
 * may still be applied (it stays in the stream until an owner replies); its outcome is observable
 * through the task list, and the Idempotency-Key retry returns it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { ErrorCodes, IroncladError, type ErrorCode } from '../../domain/errors.js';
import type { Principal } from '../../domain/principal.js';
import { BusTimeoutError, commandSubject, type Bus, type CommandReply } from '../../ports/bus.js';

export type EntityKind = 'node' | 'stack';

/** What travels on the command subject. */
export interface CommandEnvelope<C = unknown> {
  v: 1;
  kind: EntityKind;
  entity: string;
  principal: Principal;
  command: C;
  meta: RoutedMeta;
}

export interface RoutedMeta {
  request_id: string | null;
  idempotency_key: string | null;
  correlation_id?: string | null;
  causation_id?: string | null;
}

/** An accepted reply carries the service's full outcome (what the HTTP layer renders). */
export type AcceptedReply<R> = Extract<CommandReply, { status: 'accepted' }> & { result: R };

export interface CommandRouterOptions {
  /** The bus, or a getter (the composition root creates the bus after the services). */
  bus: Bus | (() => Bus);
  partitions: number;
  /** Bound on one command's round trip (publish + decision + reply). */
  timeoutMs: number;
  /** Seconds a client should wait before retrying after a timeout (Retry-After). Default 2. */
  retryAfterS?: number;
}

export interface CommandRouter {
  send<C extends { type: string }, R>(kind: EntityKind, principal: Principal, entity: string, command: C, meta: RoutedMeta): Promise<R>;
}

/** The command's Nats-Msg-Id (see the module comment). */
export function commandMsgId(kind: EntityKind, principal: Principal, entity: string, command: { type: string }, meta: RoutedMeta): string {
  // Not the injected Ids: a message id must be unique across every process of the fleet and every restart.
  if (meta.idempotency_key === null) return `c-${randomUUID()}`;
  const h = createHash('sha256').update(JSON.stringify([principal.tenant, meta.idempotency_key, kind, entity, command.type])).digest('hex');
  return `k-${h.slice(0, 48)}`;
}

/** The `reason` of the 503 `overloaded` answered when no owner confirmed a command in time. */
export const COMMAND_NOT_CONFIRMED = 'command_not_confirmed';

const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ErrorCodes, code);

/** Turns a rejected reply back into the error the owner raised. */
export function rejectionError(problem: Extract<CommandReply, { status: 'rejected' }>['problem']): IroncladError {
  const { code, detail, ...extensions } = problem;
  return isErrorCode(code) ? new IroncladError(code, detail, extensions) : new IroncladError('internal', detail, { owner_code: code });
}

export function createCommandRouter(opts: CommandRouterOptions): CommandRouter {
  const { partitions, timeoutMs } = opts;
  const bus = (): Bus => (typeof opts.bus === 'function' ? opts.bus() : opts.bus);
  const retryAfterS = opts.retryAfterS ?? 2;
  return {
    async send<C extends { type: string }, R>(kind: EntityKind, principal: Principal, entity: string, command: C, meta: RoutedMeta): Promise<R> {
      const msgId = commandMsgId(kind, principal, entity, command, meta);
      const envelope: CommandEnvelope<C> = { v: 1, kind, entity, principal, command, meta };
      let reply: CommandReply;
      try {
        reply = await bus().request(commandSubject(entity, partitions), envelope, { msgId, timeoutMs });
      } catch (err) {
        if (!(err instanceof BusTimeoutError)) throw err;
        // api.md's error codes are a closed list: this is `overloaded` (503 + Retry-After), told apart by `reason`.
        throw new IroncladError('overloaded',
          `The ${command.type} command for ${kind} ${entity} was not confirmed within ${Math.round(timeoutMs / 100) / 10} s. It may still be applied: `
          + 'check the tasks, or retry with the same Idempotency-Key to get its outcome without applying it twice.',
          { retry_after_s: retryAfterS, reason: COMMAND_NOT_CONFIRMED, command_id: msgId }, { cause: err });
      }
      if (reply.status === 'rejected') throw rejectionError(reply.problem);
      return (reply as AcceptedReply<R>).result;
    },
  };
}
