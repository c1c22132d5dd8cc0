/**
 * The operation flow shared by every command: start an action, enter a state (start a driver
 * step, or finish the operation and its task), and drain the queue at the end of an operation.
 */
import { DRIVER_OPERATION_FOR_STATE, nextProvisionState, stateInfo } from '../../../machines/node/node.model.js';
import type { TaskError } from '../../../machines/node/node.events.js';
import type { PowerTarget } from '../../ports/driver.js';
import type { Working } from './working.js';
import { checkPower, checkVerb, eventOfVerb } from './rules.js';
import type { TaskRecord } from '../tasks.js';

/** The deadline (ISO time) of `provisionState` (wait/hold/active) entered now. */
export function stateDeadline(w: Working, provisionState: string = w.state.provision_state): string {
  const kind = stateInfo(provisionState).kind;
  const info = w.state.driver_info;
  const cfg = w.ctx.config;
  if (kind === 'wait') return w.deadline(num(info['callback_timeout_s']) ?? cfg.callbackTimeoutS);
  if (kind === 'hold') return w.deadline(num(info['hold_timeout_s']) ?? cfg.holdTimeoutS);
  return w.deadline(num(info['step_timeout_s']) ?? cfg.stepTimeoutS);
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : null;
}

/** Applies an accepted provision verb for `task` (already created) and follows it through. */
export function startProvision(w: Working, taskId: string, verb: string): void {
  const s = w.state;
  const from = s.provision_state;
  const event = eventOfVerb(verb);
  const to = nextProvisionState(from, event);
  if (to === null) throw new Error(`startProvision: ${verb} not accepted in ${from}`);
  const superseded = s.op && verb !== 'unhold' ? s.op.task_id : null;
  const manualClean = verb === 'clean' && from === 'manageable';
  const toKind = stateInfo(to).kind;
  const target = manualClean ? 'manageable' : stateInfo(to).defaultTarget;
  const deadlineKind = toKind === 'wait' ? num(s.driver_info['callback_timeout_s']) ?? w.ctx.config.callbackTimeoutS
    : toKind === 'hold' ? num(s.driver_info['hold_timeout_s']) ?? w.ctx.config.holdTimeoutS : null;
  if (superseded && verb !== 'abort') {
    w.emit('TaskFinished', { task_id: superseded, state: 'cancelled', error: { code: 'cancelled', message: `superseded by ${verb} (task ${taskId})` } });
  }
  w.emit('ProvisionActionStarted', {
    task_id: taskId, op_id: w.ctx.newId(), action: verb, event, from, to, target_provision_state: target,
    manual_clean: manualClean, deadline_at: deadlineKind === null ? null : w.deadline(deadlineKind),
  });
  if (verb === 'abort' && superseded) {
    w.emit('TaskFinished', { task_id: superseded, state: 'cancelled', error: { code: 'cancelled', message: `aborted by task ${taskId}` } });
  }
  if (verb === 'unhold') {
    w.emit('TaskFinished', { task_id: taskId, state: 'succeeded', error: null });
    return;
  }
  enterState(w, 'start', taskId);
}

/**
 * After the provision state changed: an active state starts a driver step; a stable or failure
 * state ends the operation (its task succeeds unless `error`) and the queue moves on.
 */
export function enterState(w: Working, phase: 'start' | 'resume', actionTaskId: string | null, error: TaskError | null = null): void {
  const s = w.state;
  const kind = stateInfo(s.provision_state).kind;
  if (kind === 'active' && s.op) {
    w.emit('StepStarted', {
      op_id: s.op.op_id, step_id: w.ctx.newId(), operation: DRIVER_OPERATION_FOR_STATE[s.provision_state as keyof typeof DRIVER_OPERATION_FOR_STATE],
      phase, deadline_at: stateDeadline(w),
    });
    return;
  }
  if (kind === 'wait' || kind === 'hold') return;
  const taskId = s.op?.task_id ?? actionTaskId;
  if (taskId && w.state.tasks[taskId]) {
    w.emit('TaskFinished', error ? { task_id: taskId, state: 'failed', error } : { task_id: taskId, state: 'succeeded', error: null });
  }
  drainQueue(w);
}

/** Starts the next queued task that still fits the node; fails those that no longer do. */
export function drainQueue(w: Working): void {
  while (!w.state.op && w.state.queue.length > 0) {
    const id = w.state.queue[0]!;
    const task = w.state.tasks[id];
    if (!task) {
      // Defensive: a queue entry without an active task cannot start; drop it by cancelling.
      w.emit('TaskCancelled', { task_id: id, reason: 'queue entry without task' });
      continue;
    }
    const refusal = refusalFor(w, task);
    if (refusal) {
      w.emit('TaskFinished', {
        task_id: id, state: 'failed',
        error: { code: 'precondition_failed', message: `Queued ${task.action} could not start: the node is in "${w.state.provision_state}"${w.state.maintenance ? ' (in maintenance)' : ''}. ${refusal}` },
      });
      continue;
    }
    if (task.kind === 'power') startPower(w, id, task.action as PowerTarget, (task.params['timeout_s'] as number | undefined) ?? null);
    else startProvision(w, id, task.action);
  }
}

function refusalFor(w: Working, task: TaskRecord): string | null {
  if (task.kind === 'power') return checkPower(w.state.provision_state)?.message ?? null;
  return checkVerb(w.state.provision_state, w.state.maintenance, task.action)?.message ?? null;
}

/** Starts a power action (a work order for the driver). */
export function startPower(w: Working, taskId: string, target: PowerTarget, timeoutS: number | null): void {
  const targetPower = target === 'power off' || target === 'soft power off' ? 'power off' : 'power on';
  w.emit('PowerActionStarted', {
    task_id: taskId, op_id: w.ctx.newId(), step_id: w.ctx.newId(), target, target_power_state: targetPower,
    deadline_at: w.deadline(timeoutS ?? w.ctx.config.stepTimeoutS),
  });
}

/** Fails queued tasks that maintenance now refuses (they would fail at their turn anyway). */
export function failRefusedQueued(w: Working, why: string): void {
  for (const id of [...w.state.queue]) {
    const task = w.state.tasks[id];
    if (!task || task.kind !== 'provision') continue;
    const refusal = checkVerb(w.state.target_provision_state ?? w.state.provision_state, true, task.action);
    if (refusal?.code === 'in_maintenance') {
      w.emit('TaskFinished', { task_id: id, state: 'failed', error: { code: 'precondition_failed', message: `Queued ${task.action} cannot run: ${why}.` } });
    }
  }
}
