/**
 * The convergence engine's decisions (docs/stacks.md "The algorithm"): start a traversal, start
 * what became ready, record worker outcomes and signals, fail, roll back and complete.
 *
 * Rules learned from Heat that this file keeps:
 * - every outcome is recorded, and then the *newest* traversal is advanced, on success and on
 *   failure alike (an older traversal's in-flight action is what a newer one may be waiting for);
 * - an older traversal starts nothing new; a record has at most one action in flight (its lock);
 * - reports are idempotent: a report naming an action that is not in flight is ignored.
 */
import type { TaskError } from '../../../machines/stack/stack.events.js';
import type { StackAction } from '../../../machines/stack/stack.machine.js';
import { errors } from '../errors.js';
import { allowedStackActions } from '../../../machines/stack/stack.model.js';
import {
  buildGraph, inputsOf, isComplete, planCleanup, planUpdate, ready, resolveReferences, updateNodesByName,
  type CleanupSkip, type GraphNode, type NodeOutput,
} from './graph.js';
import { holdsOn, type ResourceAction } from './resource-types.js';
import type { ResourceOutcomeReport } from './commands.js';
import type { ResourceRecord, StackState, Traversal } from './state.js';
import { EMPTY_TEMPLATE, type ResourceDefinition, type Template } from './template.js';
import type { StackWorking } from './working.js';

export interface TraversalRequest {
  action: StackAction;
  template: Template;
  template_id: string;
  task_id: string | null;
  task_error: TaskError | null;
  timeout_s: number;
  rollback_on_failure: boolean;
}

/** Starts a traversal converging to the request's template, then starts what is ready. */
export function beginTraversal(w: StackWorking, r: TraversalRequest): void {
  const s = w.state;
  const plan = buildGraph({
    template: r.template, template_id: r.template_id, previous_template_id: s.template_id,
    records: Object.values(s.records), newId: w.ctx.newId,
  });
  w.emit('TraversalStarted', {
    traversal_id: w.ctx.newId(), action: r.action, template: r.template, template_id: r.template_id,
    previous_template: s.template, previous_template_id: s.template_id, graph: plan.graph, new_records: [...plan.new_records],
    timeout_s: r.timeout_s, rollback_on_failure: r.rollback_on_failure, deadline_at: w.deadline(r.timeout_s),
    task_id: r.task_id, task_error: r.task_error,
  });
  advance(w);
}

/** Rollback = converge back to the last template a traversal completed with (empty if none). */
export function beginRollback(w: StackWorking, taskId: string | null, taskError: TaskError | null): void {
  const s = w.state;
  beginTraversal(w, {
    action: 'ROLLBACK', template: s.last_good?.template ?? EMPTY_TEMPLATE, template_id: s.last_good?.template_id ?? w.ctx.newId(),
    task_id: taskId, task_error: taskError, timeout_s: s.timeout_s, rollback_on_failure: s.rollback_on_failure,
  });
}

/** The outputs a reported node passes on: those of the record that now stands for it. */
function outputOf(s: StackState, t: Traversal): (key: string) => NodeOutput | null {
  return (key) => {
    const r = s.records[t.done[key] ?? ''];
    return r ? { record_id: r.record_id, physical_id: r.physical_id, attributes: r.attributes } : null;
  };
}

/**
 * Starts every ready node of the newest traversal whose record is free; completes nodes that
 * need no action at once, which may make more nodes ready (hence the loop); completes the
 * traversal when every node has reported. Does nothing unless the traversal is running.
 */
export function advance(w: StackWorking): void {
  for (;;) {
    const t = w.state.traversal;
    if (!t || t.state !== 'running') return;
    if (isComplete(t.graph, t.done)) return completeTraversal(w, t);
    const current = new Set(Object.entries(t.done).filter(([k]) => t.graph.nodes[k]?.phase === 'update').map(([, id]) => id));
    const skipped: { record_id: string; why: CleanupSkip }[] = [];
    let progressed = false;
    for (const node of ready(t.graph, t.done)) {
      const now = w.state.traversal!;
      const record = w.state.records[node.record_id];
      if (now.started[node.key] !== undefined || now.done[node.key] !== undefined) continue;
      if (!record) {
        // Defensive: a record purged since the graph was built is gone; nothing to clean.
        if (node.phase === 'cleanup') skipped.push({ record_id: node.record_id, why: 'already_deleted' });
        continue;
      }
      if (record.action) continue; // busy with an older traversal's action: its report re-triggers us
      if (node.phase === 'update') {
        stepUpdate(w, node, record);
        progressed = true;
        continue;
      }
      const plan = planCleanup(record, current.has(record.record_id));
      if (plan === 'delete') {
        startAction(w, node, record, 'DELETE', null, record.properties ?? {}, {}, [...record.requires], [...record.requires_names]);
        progressed = true;
      } else skipped.push({ record_id: record.record_id, why: plan });
    }
    if (skipped.length > 0) {
      w.emit('CleanupSkipped', { traversal_id: t.id, records: skipped });
      progressed = true;
    }
    if (!progressed) return;
  }
}

function stepUpdate(w: StackWorking, node: GraphNode, record: ResourceRecord): void {
  const t = w.state.traversal!;
  const def = t.template.resources[node.name]!;
  const inputs = inputsOf(t.graph, node.key, outputOf(w.state, t));
  const resolved = resolveReferences(def.properties, inputs) as Record<string, unknown>;
  const requires = node.requires.map((k) => t.done[k]!);
  const names = node.requires.map((k) => t.graph.nodes[k]!.name);
  switch (planUpdate(record, def, resolved)) {
    case 'noop':
      w.emit('ResourceUnchanged', { traversal_id: t.id, record_id: record.record_id, template_id: t.template_id, definition: def, requires, requires_names: names });
      return;
    case 'create':
      return startAction(w, node, record, 'CREATE', def, resolved, inputs, requires, names);
    case 'update':
      return startAction(w, node, record, 'UPDATE', def, resolved, inputs, requires, names);
    case 'replace': {
      // Create before delete: the old record stays until its cleanup node, after every update.
      const id = w.ctx.newId();
      w.emit('ResourceRecordCreated', { traversal_id: t.id, record_id: id, name: node.name, type: def.type, replaces: record.record_id });
      return startAction(w, node, w.state.records[id]!, 'CREATE', def, resolved, inputs, requires, names);
    }
  }
}

function startAction(
  w: StackWorking, node: GraphNode, record: ResourceRecord, action: ResourceAction, def: ResourceDefinition | null,
  properties: Record<string, unknown>, inputs: Record<string, NodeOutput>, requires: string[], requiresNames: string[],
): void {
  const t = w.state.traversal!;
  const type = def?.type ?? record.type;
  w.emit('ResourceActionStarted', {
    traversal_id: t.id, action_id: w.ctx.newId(), node_record_id: node.record_id, phase: node.phase, record_id: record.record_id,
    name: record.name, type, action, template_id: def ? t.template_id : record.template_id ?? t.template_id, definition: def,
    properties, previous_properties: action === 'UPDATE' ? record.properties : null,
    physical_id: action === 'CREATE' ? null : record.physical_id, requires, requires_names: requiresNames, inputs,
    hold: holdsOn(type, properties, action), deadline_at: t.deadline_at,
  });
}

/** Records a worker's report, then advances the newest traversal. Stale or duplicate → ignored. */
export function reportOutcome(w: StackWorking, c: ResourceOutcomeReport): void {
  const record = w.state.records[c.record_id];
  const a = record?.action;
  // A held action has had its report already: a second one is a duplicate delivery.
  if (!record || !a || a.action_id !== c.action_id || a.traversal_id !== c.traversal_id || a.held !== null) {
    w.result.ignored = true;
    return;
  }
  const outputs = {
    physical_id: c.outputs?.physical_id ?? record.physical_id,
    attributes: c.outputs?.attributes ?? record.attributes,
  };
  if (c.outcome === 'failed') actionFailed(w, record, c.error ?? { code: 'resource_failed', message: 'the resource action failed' });
  else if (a.hold && a.signal === null) {
    w.emit('ResourceActionHeld', { action_id: a.action_id, record_id: record.record_id, ...outputs });
    return;
  } else if (a.hold && a.signal?.status === 'fail') actionFailed(w, record, signalError(a.signal.reason));
  else w.emit('ResourceActionCompleted', { traversal_id: a.traversal_id, action_id: a.action_id, record_id: record.record_id, ...outputs });
  advance(w);
}

const signalError = (reason: string | null): TaskError => ({ code: 'resource_failed', message: reason ?? 'Signalled as failed' });

/**
 * Releases the newest held record named `name` (api.md "Test resource details"). A signal that
 * arrives before the worker finished is recorded and applied when it reports.
 * @throws IroncladError `not_found` for an unknown name, `invalid_state` when nothing waits.
 */
export function signal(w: StackWorking, name: string, status: 'complete' | 'fail', reason: string | null): void {
  const s = w.state;
  const named = Object.values(s.records).filter((r) => r.name === name);
  if (named.length === 0) throw errors.notFound(`Resource "${name}" of stack`, s.id);
  const holding = named.filter((r) => r.action?.hold).sort((a, b) => b.seq - a.seq)[0];
  if (!holding) {
    throw errors.invalidState(`Resource "${name}" is not waiting for a signal (no action with hold_on is in progress).`, s.status, allowedStackActions(s.status));
  }
  const a = holding.action!;
  if (a.signal !== null) {
    w.result.ignored = true; // the first signal decides; repeating it changes nothing
    return;
  }
  w.emit('ResourceSignalled', { action_id: a.action_id, record_id: holding.record_id, name, status, reason });
  if (a.held === null) return;
  if (status === 'fail') actionFailed(w, holding, signalError(reason));
  else w.emit('ResourceActionCompleted', { traversal_id: a.traversal_id, action_id: a.action_id, record_id: holding.record_id, ...a.held });
  advance(w);
}

function actionFailed(w: StackWorking, record: ResourceRecord, error: TaskError): void {
  const a = record.action!;
  w.emit('ResourceActionFailed', { traversal_id: a.traversal_id, action_id: a.action_id, record_id: record.record_id, error });
  const t = w.state.traversal;
  // A failure of an older traversal's action is recorded only: the newest traversal decides.
  if (!t || t.id !== a.traversal_id || t.state !== 'running') return;
  const reason = `Resource ${a.action} failed: resources.${record.name}: ${error.message}`;
  failTraversal(w, 'resource', reason, { code: error.code === 'no_capacity' ? 'no_capacity' : 'resource_failed', message: reason });
}

/** The durable stack timer fired. Ignored unless it is the running traversal's own deadline. */
export function expireTimeout(w: StackWorking, traversalId: string, deadlineAt: string): void {
  const t = w.state.traversal;
  if (!t || t.id !== traversalId || t.state !== 'running' || t.deadline_at !== deadlineAt || w.ctx.now < Date.parse(deadlineAt)) {
    w.result.ignored = true;
    return;
  }
  failTraversal(w, 'timeout', 'Timed out', { code: 'deadline_expired', message: 'Timed out' });
}

/**
 * Fails the running traversal: nothing new starts (in-flight actions finish and are recorded),
 * then a create/update rolls back when `rollback_on_failure` (never a rollback or a delete).
 * Its task fails, or is handed to the rollback, which fails it with this error at its end.
 */
export function failTraversal(w: StackWorking, cause: 'resource' | 'timeout', reason: string, error: TaskError): void {
  const t = w.state.traversal!;
  w.emit('TraversalFailed', { traversal_id: t.id, action: t.action, cause, reason, error });
  const final = t.task_error ? { code: t.task_error.code, message: `${t.task_error.message}; then ${t.action}: ${reason}` } : error;
  if (w.state.rollback_on_failure && (t.action === 'CREATE' || t.action === 'UPDATE')) beginRollback(w, t.task_id, final);
  else finishTask(w, t.task_id, final);
}

function completeTraversal(w: StackWorking, t: Traversal): void {
  w.emit('TraversalCompleted', { traversal_id: t.id, action: t.action, outputs: t.action === 'DELETE' ? {} : stackOutputs(w.state, t) });
  if (t.action === 'DELETE') w.emit('StackDeleted', {});
  finishTask(w, t.task_id, t.task_error);
}

/** The template's outputs resolved against the records the traversal converged to. */
export function stackOutputs(s: StackState, t: Traversal): Record<string, unknown> {
  const byName: Record<string, NodeOutput> = {};
  const out = outputOf(s, t);
  for (const [name, key] of updateNodesByName(t.graph)) {
    const o = out(key);
    if (o) byName[name] = o;
  }
  return Object.fromEntries(Object.entries(t.template.outputs).map(([name, o]) => [name, resolveReferences(o.value, byName)]));
}

/** Ends a still-active task: succeeded, or failed with `error`. */
export function finishTask(w: StackWorking, taskId: string | null, error: TaskError | null): void {
  if (taskId === null || !w.state.tasks[taskId]) return;
  w.emit('TaskFinished', error ? { task_id: taskId, state: 'failed', error } : { task_id: taskId, state: 'succeeded', error: null });
}
