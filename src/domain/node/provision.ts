/** Provision commands: user verbs, driver outcomes, agent heartbeats, deadlines, cancel, maintenance. */
import { nextProvisionState, stateInfo } from '../../../machines/node/node.model.js';
import { errors, IroncladError } from '../errors.js';
import type { NodeCommand } from './commands.js';
import type { Working } from './working.js';
import { drainQueue, enterState, failRefusedQueued, startProvision, stateDeadline } from './flow.js';
import { allowedActionsNow, busyOperationTask, canonical, checkVerb, headingState, verbPassesOperation } from './rules.js';
import type { TaskRecord } from '../tasks.js';

type Cmd<T extends NodeCommand['type']> = Extract<NodeCommand, { type: T }>;

/** Finds an active task identical to the request (same kind, action and parameters). */
export function findIdentical(w: Working, kind: 'provision' | 'power', action: string, params: Record<string, unknown>): TaskRecord | null {
  const key = canonical(params);
  for (const t of Object.values(w.state.tasks)) {
    if (t.kind === kind && t.action === action && canonical(t.params) === key) return t;
  }
  return null;
}

/** Coalesces into an identical task if there is one; returns true when it did. */
export function coalesce(w: Working, kind: 'provision' | 'power', action: string, params: Record<string, unknown>): boolean {
  const same = findIdentical(w, kind, action, params);
  if (!same) return false;
  w.emit('TaskCoalesced', { task_id: same.id, requested_by: w.ctx.principal });
  w.result.task_id = same.id;
  w.result.coalesced = true;
  return true;
}

export function createTask(w: Working, c: { task_id: string; callback_url: string | null }, kind: 'provision' | 'power', action: string, params: Record<string, unknown>, queued: boolean): void {
  w.emit('TaskCreated', {
    task_id: c.task_id, action, kind, params, callback_url: c.callback_url, requested_by: w.ctx.principal,
    idempotency_key: w.ctx.idempotency_key, queued,
  });
  w.result.task_id = c.task_id;
}

/** Queues behind the running operation (or refuses with node_busy / queue_full). */
export function queueOrReject(w: Working, c: { on_busy: 'reject' | 'queue'; task_id: string; callback_url: string | null }, kind: 'provision' | 'power', action: string, params: Record<string, unknown>): void {
  const s = w.state;
  const blocking = busyOperationTask(s);
  if (c.on_busy !== 'queue') {
    throw errors.nodeBusy(`Node ${s.id} is busy with task ${s.op?.task_id} (${s.op?.action}) in "${s.provision_state}". Retry later, or send on_busy: "queue" to queue behind it.`, blocking, s.provision_state);
  }
  if (s.queue.length >= w.ctx.config.queueDepth) {
    throw errors.queueFull(`Node ${s.id} already has ${s.queue.length} queued tasks (limit ${w.ctx.config.queueDepth}).`, s.queue.length);
  }
  createTask(w, c, kind, action, params, true);
}

export function requestProvision(w: Working, c: Cmd<'RequestProvision'>): void {
  if (coalesce(w, 'provision', c.verb, c.params)) return;
  const s = w.state;
  if (!verbPassesOperation(s, c.verb)) {
    const refusal = checkVerb(headingState(s), s.maintenance, c.verb);
    if (refusal) throw refusalError(w, refusal.code, `${refusal.message} (checked against "${headingState(s)}", where the node is heading)`);
    queueOrReject(w, c, 'provision', c.verb, c.params);
    return;
  }
  const refusal = checkVerb(s.provision_state, s.maintenance, c.verb);
  if (refusal) throw refusalError(w, refusal.code, refusal.message);
  createTask(w, c, 'provision', c.verb, c.params, false);
  startProvision(w, c.task_id, c.verb);
}

function refusalError(w: Working, code: 'invalid_state' | 'in_maintenance', message: string): IroncladError {
  const s = w.state;
  const allowed = allowedActionsNow(s);
  return code === 'in_maintenance' ? errors.inMaintenance(message, s.provision_state, allowed) : errors.invalidState(message, s.provision_state, allowed);
}

/** The machine event that completes the current active state successfully. */
function successEvent(w: Working): 'done' | 'clean' | 'manage' {
  const s = w.state;
  if (s.provision_state === 'deleting') return 'clean';
  if (s.provision_state === 'cleaning' && s.op?.manual_clean) return 'manage';
  return 'done';
}

function succeed(w: Working): void {
  const s = w.state;
  const event = successEvent(w);
  const to = nextProvisionState(s.provision_state, event)!;
  w.emit('OperationSucceeded', { op_id: s.op!.op_id, event, from: s.provision_state, to });
  enterState(w, 'start', null);
}

function fail(w: Working, code: string, message: string): void {
  const s = w.state;
  const event = nextProvisionState(s.provision_state, 'fail') !== null ? 'fail' : 'abort';
  const to = nextProvisionState(s.provision_state, event);
  if (to === null) throw new Error(`node ${s.id}: neither fail nor abort accepted in ${s.provision_state}`);
  const error = { code, message };
  w.emit('OperationFailed', { op_id: s.op!.op_id, event, error, from: s.provision_state, to });
  enterState(w, 'start', null, error);
}

function pause(w: Working, kind: 'wait' | 'hold'): void {
  const s = w.state;
  const to = nextProvisionState(s.provision_state, kind);
  if (to === null) {
    fail(w, 'driver_error', `The driver asked to ${kind}, but "${s.provision_state}" cannot ${kind}.`);
    return;
  }
  const base = { op_id: s.op!.op_id, from: s.provision_state, to };
  const deadline = stateDeadline(w, to);
  if (kind === 'wait') w.emit('OperationWaiting', { ...base, deadline_at: deadline });
  else w.emit('OperationHeld', { ...base, deadline_at: deadline });
}

export function stepOutcome(w: Working, c: Cmd<'ReportStepOutcome'>): void {
  const op = w.state.op;
  if (!op || op.op_id !== c.op_id || op.step_id !== c.step_id) {
    w.result.ignored = true; // stale: the step is no longer current (finished, superseded or expired)
    return;
  }
  switch (c.outcome.kind) {
    case 'done': return succeed(w);
    case 'fail': return fail(w, 'driver_error', c.outcome.message);
    case 'wait': return pause(w, 'wait');
    case 'hold': return pause(w, 'hold');
  }
}

export function heartbeat(w: Working, c: Cmd<'Heartbeat'>): void {
  const s = w.state;
  if (stateInfo(s.provision_state).kind !== 'wait' || !s.op) {
    throw errors.invalidState(`Node ${s.id} is in "${s.provision_state}", not waiting for a callback.`, s.provision_state, allowedActionsNow(s));
  }
  if (c.status === 'fail') return fail(w, 'driver_error', c.message ?? 'the deploy agent reported a failure');
  if (c.status === 'done' && nextProvisionState(s.provision_state, 'done') !== null) return succeed(w);
  const to = nextProvisionState(s.provision_state, 'resume')!;
  w.emit('OperationResumed', { op_id: s.op.op_id, from: s.provision_state, to, via: 'heartbeat' });
  if (c.status === 'done') succeed(w);
  else enterState(w, 'resume', null);
}

export function expireDeadline(w: Working, c: Cmd<'ExpireDeadline'>): void {
  const s = w.state;
  if (!s.op || s.op.op_id !== c.op_id || s.op.deadline_at !== c.deadline_at) {
    w.result.ignored = true;
    return;
  }
  if (s.op.kind === 'power') {
    const error = { code: 'deadline_expired', message: `power action "${s.op.action}" did not finish by its deadline ${c.deadline_at}` };
    w.emit('PowerActionFailed', { op_id: s.op.op_id, error });
    w.emit('TaskFinished', { task_id: s.op.task_id, state: 'failed', error });
    drainQueue(w);
    return;
  }
  const kind = stateInfo(s.provision_state).kind;
  const what = kind === 'wait' ? 'callback' : kind === 'hold' ? 'hold' : 'step';
  fail(w, 'deadline_expired', `The ${what} deadline of "${s.provision_state}" expired at ${c.deadline_at}.`);
}

export function cancelTask(w: Working, c: Cmd<'CancelTask'>): void {
  const s = w.state;
  const task = s.tasks[c.task_id];
  if (!task) throw errors.notCancellable(`Task ${c.task_id} is already finished.`, 'terminal');
  if (task.state === 'queued') {
    w.emit('TaskCancelled', { task_id: task.id, reason: `cancelled by ${w.ctx.principal}` });
    w.result.task_id = task.id;
    return;
  }
  const kind = stateInfo(s.provision_state).kind;
  if (s.op?.task_id === task.id && (kind === 'wait' || kind === 'hold') && nextProvisionState(s.provision_state, 'abort') !== null) {
    createTask(w, { task_id: c.abort_task_id, callback_url: null }, 'provision', 'abort', {}, false);
    startProvision(w, c.abort_task_id, 'abort');
    return;
  }
  throw errors.notCancellable(`Task ${task.id} is running in "${s.provision_state}", which cannot be aborted; only queued tasks and operations in a "* wait" or "* hold" state can be cancelled.`, task.state);
}

export function setMaintenance(w: Working, reason: string | null, fault: string | null): void {
  w.emit('MaintenanceSet', { reason, fault });
  failRefusedQueued(w, `the node went into maintenance${reason ? ` (${reason})` : ''}`);
}

export function unsetMaintenance(w: Working): void {
  if (!w.state.maintenance) return;
  w.emit('MaintenanceUnset', { fault_cleared: w.state.fault });
}
