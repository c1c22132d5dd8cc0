/**
 * decide(command, state, ctx) → events, for the stack actor. Pure: time, ids and limits come in
 * the context. Throws IroncladError for refusals, never performs IO.
 *
 * Every request is "converge to template T" (docs/stacks.md): create, update, delete and
 * rollback each start a traversal; a newer one supersedes the running one (its task ends
 * `cancelled`), without waiting and without a stack-wide lock.
 */
import type { StackEvent } from '../../../machines/stack/stack.events.js';
import { allowedStackActions, nextStackStatus, STACK_API_VERBS, type StackApiVerb } from '../../../machines/stack/stack.model.js';
import { errors, IroncladError } from '../errors.js';
import type { StackCommand, StackDecideContext, StackDecideResult, TaskRequest } from './commands.js';
import { jsonEqual } from './json.js';
import type { StackState } from './state.js';
import { EMPTY_TEMPLATE } from './template.js';
import { beginRollback, beginTraversal, expireTimeout, finishTask, reportOutcome, signal } from './traversal.js';
import { StackWorking } from './working.js';

export interface StackDecision {
  events: StackEvent[];
  result: StackDecideResult;
  state: StackState;
}

/** Decides one command against the folded stack state. */
export function decideStack(command: StackCommand, state: StackState, ctx: StackDecideContext): StackDecision {
  const w = new StackWorking(state, ctx);
  if (command.type !== 'Create' && !state.exists) throw errors.notFound('Stack', state.id);
  switch (command.type) {
    case 'Create':
      create(w, command);
      break;
    case 'Update':
      update(w, command);
      break;
    case 'Delete':
      remove(w, command);
      break;
    case 'CancelUpdate':
      cancelUpdate(w, command);
      break;
    case 'Rollback':
      requireVerb(w, 'rollback');
      createTask(w, 'rollback', command, {});
      beginRollback(w, command.task_id, null);
      break;
    case 'ReportResourceOutcome': {
      const { type: _t, ...report } = command;
      reportOutcome(w, report);
      break;
    }
    case 'ExpireTimeout':
      expireTimeout(w, command.traversal_id, command.deadline_at);
      break;
    case 'Signal':
      signal(w, command.name, command.status, command.reason);
      break;
    case 'RecordCallbackAttempt': {
      const { type: _t, ...data } = command;
      w.emit('CallbackAttempted', data);
      break;
    }
    default: {
      const _exhaustive: never = command;
      throw new Error(`unknown command ${JSON.stringify(_exhaustive)}`);
    }
  }
  return { events: w.events, result: w.result, state: w.state };
}

/** Refuses a verb the stack machine does not accept in the current status. */
function requireVerb(w: StackWorking, verb: StackApiVerb): void {
  const s = w.state;
  if (nextStackStatus(s.status, STACK_API_VERBS[verb]) === null) {
    throw errors.invalidState(`Stack ${s.name ?? s.id} is ${s.status}; ${verb} is not allowed now.`, s.status, allowedStackActions(s.status));
  }
}

function checkTimeout(timeoutS: number | null): void {
  if (timeoutS !== null && !(Number.isInteger(timeoutS) && timeoutS > 0)) {
    throw errors.validation([{ path: 'body.timeout_s', message: 'must be a positive whole number of seconds' }]);
  }
}

function createTask(w: StackWorking, action: string, c: TaskRequest, params: Record<string, unknown>): void {
  w.emit('TaskCreated', {
    task_id: c.task_id, action, kind: 'stack', params, callback_url: c.callback_url, requested_by: w.ctx.principal,
    idempotency_key: w.ctx.idempotency_key, queued: false,
  });
  w.result.task_id = c.task_id;
}

/** Answers with the running task instead of a new one (api.md "Coalescing"). */
function coalesce(w: StackWorking, taskId: string): void {
  w.emit('TaskCoalesced', { task_id: taskId, requested_by: w.ctx.principal });
  w.result.task_id = taskId;
  w.result.coalesced = true;
}

/**
 * The running traversal's task ends: `cancelled`, since a newer request took over — or `failed`
 * with the original error when it is an automatic rollback's (the operation had failed already).
 */
function supersede(w: StackWorking, verb: string, taskId: string): void {
  const t = w.state.traversal;
  if (!t || t.state !== 'running' || t.task_id === null || !w.state.tasks[t.task_id]) return;
  const why = `${t.action === 'ROLLBACK' ? 'rollback superseded' : 'Superseded'} by ${verb} (task ${taskId}).`;
  w.emit('TaskFinished', t.task_error
    ? { task_id: t.task_id, state: 'failed', error: { code: t.task_error.code, message: `${t.task_error.message}; ${why}` } }
    : { task_id: t.task_id, state: 'cancelled', error: { code: 'cancelled', message: why } });
}

function create(w: StackWorking, c: Extract<StackCommand, { type: 'Create' }>): void {
  if (w.state.exists) throw new IroncladError('name_conflict', `Stack ${w.state.id} already exists.`);
  checkTimeout(c.timeout_s);
  const timeoutS = c.timeout_s ?? w.ctx.config.defaultTimeoutS;
  const rollback = c.rollback_on_failure ?? false;
  // The stack (and its owner) first: the create task's record takes its owner from the stack,
  // and revision 0 names the tenant for whoever reads the stream (notifier, SSE).
  w.emit('StackCreateRequested', { name: c.name, owner: c.owner });
  createTask(w, 'create', c, { timeout_s: timeoutS, rollback_on_failure: rollback });
  beginTraversal(w, {
    action: 'CREATE', template: c.template, template_id: w.ctx.newId(), task_id: c.task_id, task_error: null,
    timeout_s: timeoutS, rollback_on_failure: rollback,
  });
}

function update(w: StackWorking, c: Extract<StackCommand, { type: 'Update' }>): void {
  requireVerb(w, 'update');
  checkTimeout(c.timeout_s);
  const s = w.state;
  const timeoutS = c.timeout_s ?? s.timeout_s;
  const rollback = c.rollback_on_failure ?? s.rollback_on_failure;
  const t = s.traversal;
  const running = t && t.state === 'running' && t.action === 'UPDATE' && t.task_id !== null ? s.tasks[t.task_id] : undefined;
  if (t && running && jsonEqual(t.template, c.template) && timeoutS === s.timeout_s && rollback === s.rollback_on_failure) {
    return coalesce(w, running.id);
  }
  createTask(w, 'update', c, { timeout_s: timeoutS, rollback_on_failure: rollback });
  supersede(w, 'update', c.task_id);
  beginTraversal(w, {
    action: 'UPDATE', template: c.template, template_id: w.ctx.newId(), task_id: c.task_id, task_error: null,
    timeout_s: timeoutS, rollback_on_failure: rollback,
  });
}

function remove(w: StackWorking, c: Extract<StackCommand, { type: 'Delete' }>): void {
  const s = w.state;
  const t = s.traversal;
  if (t && t.action === 'DELETE' && t.state === 'running' && t.task_id !== null && s.tasks[t.task_id]) return coalesce(w, t.task_id);
  requireVerb(w, 'delete');
  createTask(w, 'delete', c, {});
  supersede(w, 'delete', c.task_id);
  // Delete = update to the empty template: only cleanup nodes, in reverse dependency order.
  beginTraversal(w, {
    action: 'DELETE', template: EMPTY_TEMPLATE, template_id: w.ctx.newId(), task_id: c.task_id, task_error: null,
    timeout_s: s.timeout_s, rollback_on_failure: s.rollback_on_failure,
  });
}

/**
 * Stops the running create/update: nothing new starts, in-flight actions finish. With the
 * stack's `rollback_on_failure` it rolls back (the cancel task follows the rollback), otherwise
 * the stack ends `<ACTION>_FAILED` "Stack <ACTION> cancelled" (docs/stacks.md "Cancel").
 */
function cancelUpdate(w: StackWorking, c: Extract<StackCommand, { type: 'CancelUpdate' }>): void {
  requireVerb(w, 'cancel_update');
  const t = w.state.traversal!;
  createTask(w, 'cancel_update', c, {});
  const reason = `Stack ${t.action} cancelled`;
  w.emit('TraversalFailed', { traversal_id: t.id, action: t.action, cause: 'cancel', reason, error: { code: 'cancelled', message: reason } });
  if (t.task_id !== null && w.state.tasks[t.task_id]) {
    w.emit('TaskFinished', { task_id: t.task_id, state: 'cancelled', error: { code: 'cancelled', message: `${reason} by task ${c.task_id}.` } });
  }
  if (w.state.rollback_on_failure) beginRollback(w, c.task_id, null);
  else finishTask(w, c.task_id, null);
}
