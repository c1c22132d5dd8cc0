/**
 * One command decided on an entity's actor (node or stack): the runtime loads the state, the
 * service's `decide` checks visibility and decides, the events are appended with the request's
 * metadata, and the answer carries the task as those events left it. Both services' `decideLocally`
 * are this function with their decider; in cluster mode it runs on the partition owner.
 */
import type { Principal } from '../domain/principal.js';
import { applyTaskEvent, type TaskRecord } from '../domain/tasks.js';
import type { ActorRuntime, PendingEvent } from '../runtime/actor-runtime.js';

export interface RequestMeta {
  request_id: string | null;
  idempotency_key: string | null;
  correlation_id?: string | null;
  causation_id?: string | null;
  /** Cluster mode: the command's bus message id, kept in the events' metadata (src/app/cluster/actor-host.ts). */
  command_id?: string | null;
}

/** What a command's answer is built from (the actor's state right after the append). */
export interface ActorCommandOutcome<S> {
  state: S;
  task: TaskRecord | null;
  coalesced: boolean;
  ignored: boolean;
  position: string | null;
}

/** What every entity state (node, stack) has that commands rely on. */
export interface EntityState {
  owner: string;
  /** Active tasks (finished ones leave the actor state). */
  tasks: Record<string, TaskRecord>;
}

interface DecisionResult {
  task_id: string | null;
  coalesced: boolean;
  ignored: boolean;
}

export async function decideOnActor<S extends EntityState, R extends DecisionResult>(
  runtime: ActorRuntime<S>,
  resourceType: 'node' | 'stack',
  id: string,
  principal: Principal,
  meta: RequestMeta,
  decide: (state: S) => { events: PendingEvent[]; result: R; state: S },
): Promise<ActorCommandOutcome<S>> {
  let before: S | null = null;
  const res = await runtime.execute<R>(id, (state) => {
    before = state;
    const d = decide(state);
    return { events: d.events, value: d.result, state: d.state };
  }, {
    principal: principal.id, request_id: meta.request_id, correlation_id: meta.correlation_id ?? meta.request_id,
    causation_id: meta.causation_id ?? null, ...(meta.command_id ? { command_id: meta.command_id } : {}),
  });
  const taskId = res.value.task_id;
  let task: TaskRecord | null = null;
  if (taskId) {
    task = (before as S | null)?.tasks[taskId] ?? null;
    const entity = { resource_type: resourceType, resource_id: id, owner: res.state.owner };
    for (const e of res.appended) if (e.data['task_id'] === taskId) task = applyTaskEvent(task, e, entity);
  }
  return { state: res.state, task, coalesced: res.value.coalesced, ignored: res.value.ignored, position: res.position };
}
