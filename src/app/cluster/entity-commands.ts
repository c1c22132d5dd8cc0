/**
 * How the actor host (./actor-host.ts) runs the commands of one entity kind (node, stack): the
 * service's local decision, and the look-up of a command already applied (by the `command_id`
 * in its events' metadata), rebuilt into the same outcome the service returns.
 */
import { createHash } from 'node:crypto';
import type { Principal } from '../../domain/principal.js';
import { applyTaskEvent, type TaskRecord } from '../../domain/tasks.js';
import type { EventStore } from '../../ports/event-store.js';
import { streamName, type ActorRuntime } from '../../runtime/actor-runtime.js';
import type { ActorCommandOutcome, EntityState } from '../actor-command.js';
import type { EnrollInput, RequestMeta } from '../nodes/node-service.js';
import type { EntityHandler } from './actor-host.js';
import type { EntityKind } from './command-router.js';

/** How far back (events) a keyed or redelivered command is looked for. */
const LOOK_BACK = 200;

/** The outcome both services return (CommandOutcome, StackCommandOutcome). */
export type EntityOutcome<S> = ActorCommandOutcome<S>;

export function entityHandler<S extends EntityState, C>(deps: {
  kind: EntityKind;
  decideLocally(principal: Principal, id: string, command: C, meta: RequestMeta): Promise<EntityOutcome<S>>;
  runtime: ActorRuntime<S>;
  store: EventStore;
  /** Idempotency-Key retention: an older event with the same command id is a new request reusing the key. */
  retentionMs: number;
  now: () => number;
}): EntityHandler<EntityOutcome<S>> {
  const { kind, runtime, store } = deps;
  return {
    decide: (principal, id, command, meta) => deps.decideLocally(principal, id, command as C, meta),
    async applied(id, commandId) {
      const { state, revision } = await runtime.load(id);
      if (revision < 0) return null;
      const events = await store.readStream(streamName(kind, id), { fromRevision: Math.max(0, revision - LOOK_BACK + 1) });
      const since = deps.now() - deps.retentionMs;
      const mine = events.filter((e) => e.metadata['command_id'] === commandId && Date.parse(e.time) >= since);
      if (mine.length === 0) return null;
      const taskId = mine.map((e) => e.data['task_id']).find((t): t is string => typeof t === 'string');
      let task: TaskRecord | null = taskId ? state.tasks[taskId] ?? null : null;
      if (taskId && !task) {
        for (const e of events) if (e.data['task_id'] === taskId) task = applyTaskEvent(task, e, { resource_type: kind, resource_id: id, owner: state.owner });
      }
      return { state, task, coalesced: false, ignored: false, position: mine[mine.length - 1]!.position };
    },
    evict: (which) => void runtime.evict(which),
    summary: (o) => ({ task: o.task as Record<string, unknown> | null, position: o.position }),
  };
}

/**
 * Cluster mode: a node enrolled with an Idempotency-Key gets an id derived from (tenant, key,
 * request without secrets), so the client's retry after an unconfirmed command (503) enrolls the SAME node
 * (same command id) instead of a second one. Without a key: a fresh id.
 */
export function idempotentNodeId(next: () => string) {
  return (principal: Principal, input: EnrollInput, meta: RequestMeta): string => {
    if (meta.idempotency_key === null) return next();
    const { driver_info: _secret, ...rest } = input;
    const h = createHash('sha256').update(JSON.stringify([principal.tenant, meta.idempotency_key, rest])).digest();
    h[6] = (h[6]! & 0x0f) | 0x40; // uuid version 4 layout, variant 1: ids stay valid uuids
    h[8] = (h[8]! & 0x3f) | 0x80;
    const x = h.subarray(0, 16).toString('hex');
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
  };
}
