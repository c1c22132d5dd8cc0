/**
 * The stack actor's state and its fold (evolve). The status moves only through the XState
 * machine (`nextStackStatus`); traversals and resource records are plain data beside it. The
 * same fold serves the actor, the read model and replay (history/{revision}), so they agree.
 */
import { nextStackStatus, type StackStatus } from '../../../machines/stack/stack.model.js';
import { machineEventOf, type StackEvent, type StackEventMap, type TaskError } from '../../../machines/stack/stack.events.js';
import type { StackAction } from '../../../machines/stack/stack.machine.js';
import { applyTaskEvent, isTerminal, taskIdOf, type TaskRecord } from '../tasks.js';
import { nodeKey, type Graph, type GraphRecord, type ResourceStatus } from './graph.js';
import type { ResourceAction } from './resource-types.js';
import type { ResourceDefinition, Template } from './template.js';

/** The action a record is busy with (one at a time: this is the record's lock). */
export interface InFlightAction {
  readonly action_id: string;
  readonly traversal_id: string;
  /** The graph node it reports for. */
  readonly node_key: string;
  readonly action: ResourceAction;
  readonly hold: boolean;
  /** The worker's success on a held action, waiting for the signal. */
  readonly held: { physical_id: string | null; attributes: Record<string, unknown> } | null;
  /** A signal that arrived before the worker reported. */
  readonly signal: { status: 'complete' | 'fail'; reason: string | null } | null;
  readonly deadline_at: string;
  /** What the record requires once this create/update succeeds (null for a delete). */
  readonly requires_after: readonly string[] | null;
  /** The work order itself, so it can be dispatched again after a restart from the state alone. */
  readonly order: StackEventMap['ResourceActionStarted'];
}

/** A resource record: one physical version of a resource (a replacement is another record). */
export interface ResourceRecord extends GraphRecord {
  readonly definition: ResourceDefinition | null;
  /** Resolved properties of its last action (create/update); null when never built. */
  readonly properties: Record<string, unknown> | null;
  readonly status_reason: string;
  readonly physical_id: string | null;
  readonly attributes: Record<string, unknown>;
  readonly requires_names: readonly string[];
  readonly replaced_by: string | null;
  readonly action: InFlightAction | null;
  readonly updated_at: string;
}

export interface Traversal {
  readonly id: string;
  readonly action: StackAction;
  readonly template: Template;
  readonly template_id: string;
  readonly graph: Graph;
  readonly deadline_at: string;
  readonly task_id: string | null;
  readonly task_error: TaskError | null;
  readonly state: 'running' | 'failed' | 'complete';
  /** Node key → action id, for nodes whose action started in this traversal. */
  readonly started: Readonly<Record<string, string>>;
  /** Node key → the record that now stands for it (the replacement after a replacement). */
  readonly done: Readonly<Record<string, string>>;
}

export interface StackState {
  readonly id: string;
  readonly exists: boolean;
  /** DELETE_COMPLETE: readable, accepts nothing. */
  readonly deleted: boolean;
  readonly name: string | null;
  readonly owner: string;
  readonly status: StackStatus;
  readonly status_reason: string | null;
  /** The template the user asked for last (a delete keeps it, for the record). */
  readonly template: Template | null;
  readonly template_id: string | null;
  /** The last template a traversal completed with: what a rollback restores. */
  readonly last_good: { readonly template: Template; readonly template_id: string } | null;
  readonly timeout_s: number;
  readonly rollback_on_failure: boolean;
  readonly traversal: Traversal | null;
  readonly records: Readonly<Record<string, ResourceRecord>>;
  readonly record_seq: number;
  /** Stack outputs as of the last completed traversal. */
  readonly outputs: Readonly<Record<string, unknown>>;
  /** Active (running) tasks; finished ones leave the actor state. */
  readonly tasks: Readonly<Record<string, TaskRecord>>;
  readonly revision: number;
  readonly position: string | null;
  readonly created_at: string | null;
  readonly updated_at: string | null;
}

/** A stored event as the fold needs it. */
export interface StackFoldEvent {
  type: string;
  data: Record<string, unknown>;
  time: string;
  revision: number;
  position: string | null;
}

/** The state of a stack that does not exist yet. */
export function initialStackState(id: string): StackState {
  return {
    id, exists: false, deleted: false, name: null, owner: 'default', status: 'INIT_COMPLETE', status_reason: null,
    template: null, template_id: null, last_good: null, timeout_s: 3600, rollback_on_failure: false, traversal: null,
    records: {}, record_seq: 0, outputs: {}, tasks: {}, revision: -1, position: null, created_at: null, updated_at: null,
  };
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type Data<K extends keyof StackEventMap> = StackEventMap[K];

/** Folds one stored event. Throws if the log asks for a status change the machine refuses. */
export function evolveStack(prev: StackState, stored: StackFoldEvent): StackState {
  const e = { type: stored.type, data: stored.data } as StackEvent;
  const s: Mutable<StackState> = { ...prev, revision: stored.revision, position: stored.position, updated_at: stored.time };
  applyTasks(s, stored);
  const event = machineEventOf(e);
  if (event !== null) {
    const next = nextStackStatus(s.status, event);
    if (next === null) throw new Error(`stack ${s.id} revision ${stored.revision}: "${event}" is not accepted in ${s.status}`);
    s.status = next;
  }
  applyData(s, e, stored.time);
  return s;
}

function applyTasks(s: Mutable<StackState>, stored: StackFoldEvent): void {
  const taskId = taskIdOf(stored);
  if (taskId === null) return;
  const before = s.tasks[taskId] ?? null;
  const after = applyTaskEvent(before, stored, { resource_type: 'stack', resource_id: s.id, owner: s.owner });
  if (after === before) return;
  const tasks = { ...s.tasks };
  if (after === null || isTerminal(after.state)) delete tasks[taskId];
  else tasks[taskId] = after;
  s.tasks = tasks;
}

function applyData(s: Mutable<StackState>, e: StackEvent, time: string): void {
  switch (e.type) {
    case 'StackCreateRequested':
      Object.assign(s, { exists: true, name: e.data.name, owner: e.data.owner, created_at: time });
      return;
    case 'TraversalStarted':
      startTraversal(s, e.data, time);
      return;
    case 'ResourceRecordCreated':
      s.record_seq += 1;
      putRecord(s, newRecord(e.data.record_id, e.data.name, e.data.type, null, s.record_seq, e.data.replaces, time));
      if (e.data.replaces !== null) patchRecord(s, e.data.replaces, { replaced_by: e.data.record_id });
      return;
    case 'ResourceActionStarted':
      actionStarted(s, e.data, time);
      return;
    case 'ResourceActionHeld':
      patchAction(s, e.data.record_id, { held: { physical_id: e.data.physical_id, attributes: e.data.attributes } }, 'Waiting for signal', time);
      return;
    case 'ResourceSignalled':
      patchAction(s, e.data.record_id, { signal: { status: e.data.status, reason: e.data.reason } }, null, time);
      return;
    case 'ResourceActionCompleted':
      actionEnded(s, e.data.record_id, 'COMPLETE', 'state changed', time, { physical_id: e.data.physical_id, attributes: e.data.attributes });
      return;
    case 'ResourceActionFailed':
      actionEnded(s, e.data.record_id, 'FAILED', e.data.error.message, time, null);
      return;
    case 'ResourceUnchanged':
      unchanged(s, e.data, time);
      return;
    case 'CleanupSkipped':
      for (const { record_id, why } of e.data.records) {
        if (why === 'never_built') patchRecord(s, record_id, { status: 'DELETE_COMPLETE', status_reason: 'never built', updated_at: time });
        markDone(s, e.data.traversal_id, nodeKey(record_id, 'cleanup'), record_id);
      }
      return;
    case 'TraversalCompleted':
      completed(s, e.data);
      return;
    case 'TraversalFailed':
      if (s.traversal?.id === e.data.traversal_id) s.traversal = { ...s.traversal, state: 'failed' };
      s.status_reason = e.data.reason;
      return;
    case 'StackDeleted':
      s.deleted = true;
      return;
    default:
      return;
  }
}

function startTraversal(s: Mutable<StackState>, d: Data<'TraversalStarted'>, time: string): void {
  s.traversal = {
    id: d.traversal_id, action: d.action, template: d.template, template_id: d.template_id, graph: d.graph,
    deadline_at: d.deadline_at, task_id: d.task_id, task_error: d.task_error, state: 'running', started: {}, done: {},
  };
  if (d.action !== 'DELETE') Object.assign(s, { template: d.template, template_id: d.template_id });
  Object.assign(s, { timeout_s: d.timeout_s, rollback_on_failure: d.rollback_on_failure, status_reason: `Stack ${d.action} started` });
  for (const r of d.new_records) {
    s.record_seq += 1;
    putRecord(s, newRecord(r.record_id, r.name, r.type, d.template_id, s.record_seq, null, time, d.template.resources[r.name] ?? null));
  }
}

function newRecord(
  id: string, name: string, type: string, templateId: string | null, seq: number, replaces: string | null, time: string,
  definition: ResourceDefinition | null = null,
): ResourceRecord {
  return {
    record_id: id, name, type, template_id: templateId, status: 'INIT_COMPLETE', requires: [], replaces, seq, definition,
    properties: null, status_reason: 'state changed', physical_id: null, attributes: {}, requires_names: [], replaced_by: null,
    action: null, updated_at: time,
  };
}

function putRecord(s: Mutable<StackState>, r: ResourceRecord): void {
  s.records = { ...s.records, [r.record_id]: r };
}

function patchRecord(s: Mutable<StackState>, id: string, patch: Partial<ResourceRecord>): void {
  const r = s.records[id];
  if (r) putRecord(s, { ...r, ...patch });
}

function patchAction(s: Mutable<StackState>, id: string, patch: Partial<InFlightAction>, reason: string | null, time: string): void {
  const r = s.records[id];
  if (!r?.action) return;
  putRecord(s, { ...r, action: { ...r.action, ...patch }, status_reason: reason ?? r.status_reason, updated_at: time });
}

function markDone(s: Mutable<StackState>, traversalId: string, key: string, recordId: string): void {
  const t = s.traversal;
  if (t && t.id === traversalId && t.graph.nodes[key]) s.traversal = { ...t, done: { ...t.done, [key]: recordId } };
}

function actionStarted(s: Mutable<StackState>, d: Data<'ResourceActionStarted'>, time: string): void {
  const r = s.records[d.record_id];
  if (!r) return;
  const key = nodeKey(d.node_record_id, d.phase);
  const action: InFlightAction = {
    action_id: d.action_id, traversal_id: d.traversal_id, node_key: key, action: d.action, hold: d.hold,
    held: null, signal: null, deadline_at: d.deadline_at, requires_after: d.definition === null ? null : d.requires, order: d,
  };
  // A create or update is the record being built from this definition, whatever the outcome.
  // Until it succeeds the physical resource may still refer to what it required before, so it
  // requires both (Heat's rule): its old dependencies are not cleaned up before it is.
  const built = d.definition === null ? {} : {
    template_id: d.template_id, definition: d.definition, properties: d.properties,
    requires: [...new Set([...r.requires, ...d.requires])], requires_names: d.requires_names,
  };
  putRecord(s, { ...r, ...built, status: `${d.action}_IN_PROGRESS`, status_reason: 'state changed', action, updated_at: time });
  const t = s.traversal;
  if (t && t.id === d.traversal_id) s.traversal = { ...t, started: { ...t.started, [key]: d.action_id } };
}

function actionEnded(
  s: Mutable<StackState>, id: string, outcome: 'COMPLETE' | 'FAILED', reason: string, time: string,
  outputs: { physical_id: string | null; attributes: Record<string, unknown> } | null,
): void {
  const r = s.records[id];
  if (!r?.action) return;
  const status = `${r.action.action}_${outcome}` as ResourceStatus;
  // A held action failed by its signal did run: what the worker built exists and must be cleaned.
  const result = outputs ?? r.action.held ?? {};
  const requires = outcome === 'COMPLETE' && r.action.requires_after !== null ? [...r.action.requires_after] : r.requires;
  putRecord(s, { ...r, ...result, requires, status, status_reason: reason, action: null, updated_at: time });
  if (outcome === 'COMPLETE') markDone(s, r.action.traversal_id, r.action.node_key, id);
}

function unchanged(s: Mutable<StackState>, d: Data<'ResourceUnchanged'>, time: string): void {
  patchRecord(s, d.record_id, {
    template_id: d.template_id, definition: d.definition, requires: d.requires, requires_names: d.requires_names, updated_at: time,
  });
  markDone(s, d.traversal_id, nodeKey(d.record_id, 'update'), d.record_id);
}

function completed(s: Mutable<StackState>, d: Data<'TraversalCompleted'>): void {
  const t = s.traversal;
  if (!t || t.id !== d.traversal_id) return;
  s.traversal = { ...t, state: 'complete' };
  // Deleted records stay findable until the traversal that deleted them is complete (stacks.md).
  s.records = Object.fromEntries(Object.entries(s.records).filter(([, r]) => r.status !== 'DELETE_COMPLETE'));
  s.outputs = d.outputs;
  s.status_reason = `Stack ${d.action} completed successfully`;
  if (d.action !== 'DELETE') s.last_good = { template: t.template, template_id: t.template_id };
}
