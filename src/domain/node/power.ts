/** Power commands: user power actions, their outcomes, and the periodic power-state sync. */
import { errors } from '../errors.js';
import type { NodeCommand, PowerResult } from './commands.js';
import type { Working } from './working.js';
import { drainQueue, failRefusedQueued, startPower } from './flow.js';
import { coalesce, createTask, queueOrReject } from './provision.js';
import { allowedActionsNow, checkPower, headingState } from './rules.js';

type Cmd<T extends NodeCommand['type']> = Extract<NodeCommand, { type: T }>;

export const POWER_FAULT = 'power failure';

export function requestPower(w: Working, c: Cmd<'RequestPower'>): void {
  const params: Record<string, unknown> = c.timeout_s === null ? {} : { timeout_s: c.timeout_s };
  if (coalesce(w, 'power', c.target, params)) return;
  const s = w.state;
  // Refused where the node is now (node-lifecycle.md: power in cleaning / clean wait → invalid_state),
  // unless the caller queues behind the operation: then the state it is heading for decides.
  const refusal = s.op && c.on_busy === 'queue' ? checkPower(headingState(s)) : checkPower(s.provision_state);
  if (refusal) throw errors.invalidState(refusal.message, s.provision_state, allowedActionsNow(s));
  if (s.op) {
    queueOrReject(w, c, 'power', c.target, params);
    return;
  }
  createTask(w, c, 'power', c.target, params, false);
  startPower(w, c.task_id, c.target, c.timeout_s);
}

export function powerOutcome(w: Working, c: Cmd<'ReportPowerOutcome'>): void {
  const op = w.state.op;
  if (!op || op.kind !== 'power' || op.op_id !== c.op_id || op.step_id !== c.step_id) {
    w.result.ignored = true;
    return;
  }
  if (c.result.ok) {
    w.emit('PowerActionSucceeded', { op_id: op.op_id, power_state: c.result.power_state });
    w.emit('TaskFinished', { task_id: op.task_id, state: 'succeeded', error: null });
  } else {
    const error = { code: 'driver_error', message: c.result.message };
    w.emit('PowerActionFailed', { op_id: op.op_id, error });
    w.emit('TaskFinished', { task_id: op.task_id, state: 'failed', error });
  }
  drainQueue(w);
}

/**
 * The periodic sync's reading of the real power state. A difference is recorded; consecutive
 * failures past the limit put the node into maintenance with a fault; an answer clears the fault.
 */
export function observePower(w: Working, result: PowerResult): void {
  const s = w.state;
  if (result.ok) {
    if (s.power_sync_failures > 0 || s.fault === POWER_FAULT) w.emit('PowerSyncRecovered', { after_failures: s.power_sync_failures });
    if (s.fault === POWER_FAULT && s.maintenance) w.emit('MaintenanceUnset', { fault_cleared: POWER_FAULT });
    // While a power action runs, the state is changing on purpose: do not record it as a divergence.
    if (s.op?.kind !== 'power' && s.power_state !== result.power_state) {
      w.emit('PowerStateObserved', { power_state: result.power_state, previous: s.power_state });
    }
    return;
  }
  const failures = s.power_sync_failures + 1;
  w.emit('PowerSyncFailed', { consecutive_failures: failures, message: result.message });
  if (failures >= w.ctx.config.powerSyncFailures && s.fault !== POWER_FAULT && !s.maintenance) {
    w.emit('MaintenanceSet', { reason: `power failure: ${result.message}`, fault: POWER_FAULT });
    failRefusedQueued(w, `its BMC could not be reached ${failures} times (${result.message})`);
  }
}
