/**
 * decide(command, state) → events. Pure: time, ids and limits come in the context.
 * Throws IroncladError for refusals (409/404...), never performs IO.
 */
import { errors, IroncladError } from '../errors.js';
import type { DecideContext, DecideResult, NodeCommand } from './commands.js';
import type { NodeEvent } from '../../../machines/node/node.events.js';
import type { NodeState } from './state.js';
import { Working } from './working.js';
import {
  cancelTask, expireDeadline, heartbeat, requestProvision, setMaintenance, stepOutcome, unsetMaintenance,
} from './provision.js';
import { observePower, powerOutcome, requestPower } from './power.js';
import { allowedActionsNow, busyOperationTask, claimRefusal } from './rules.js';
import { claimNode, releaseNode } from './claims.js';

export interface Decision {
  events: NodeEvent[];
  result: DecideResult;
  state: NodeState;
}

export function decideNode(command: NodeCommand, state: NodeState, ctx: DecideContext): Decision {
  const w = new Working(state, ctx);
  // Callback deliveries are recorded even after the node record was deleted (its tasks were).
  const needsLiveNode = command.type !== 'Enroll' && command.type !== 'RecordCallbackAttempt';
  if ((needsLiveNode && state.deleted) || (command.type !== 'Enroll' && !state.exists)) throw errors.notFound('Node', state.id);
  switch (command.type) {
    case 'Enroll':
      if (state.exists) throw new IroncladError('name_conflict', `Node ${state.id} already exists.`);
      w.emit('NodeEnrolled', command.data);
      break;
    case 'Update':
      update(w, command);
      break;
    case 'Delete':
      remove(w);
      break;
    case 'RequestProvision': {
      const claimed = claimRefusal(state, ctx.principal);
      if (claimed) throw errors.invalidState(claimed, state.provision_state, allowedActionsNow(state), { allocation: viewAllocation(state) });
      requestProvision(w, command);
      break;
    }
    case 'ClaimNode':
      claimNode(w, command);
      break;
    case 'ReleaseNode':
      releaseNode(w, command);
      break;
    case 'RequestPower':
      requestPower(w, command);
      break;
    case 'SetMaintenance':
      setMaintenance(w, command.reason, null);
      break;
    case 'UnsetMaintenance':
      unsetMaintenance(w);
      break;
    case 'ReportStepOutcome':
      stepOutcome(w, command);
      break;
    case 'ReportPowerOutcome':
      powerOutcome(w, command);
      break;
    case 'Heartbeat':
      heartbeat(w, command);
      break;
    case 'ExpireDeadline':
      expireDeadline(w, command);
      break;
    case 'CancelTask': {
      // A claimed node's provision tasks are the stack's: cancelling one would pull the machine from under it.
      const claimed = state.tasks[command.task_id]?.kind === 'provision' ? claimRefusal(state, ctx.principal) : null;
      if (claimed) throw errors.invalidState(claimed, state.provision_state, allowedActionsNow(state), { allocation: viewAllocation(state) });
      cancelTask(w, command);
      break;
    }
    case 'ObservePower':
      observePower(w, command.result);
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

function update(w: Working, c: Extract<NodeCommand, { type: 'Update' }>): void {
  const s = w.state;
  if (c.if_match !== null && c.if_match !== s.revision) throw errors.revisionMismatch(String(c.if_match), s.revision);
  const blocking = busyOperationTask(s);
  if (blocking) {
    throw errors.nodeBusy(`Node ${s.id} is in "${s.provision_state}" with task ${blocking.id} running; it cannot be changed now.`, blocking, s.provision_state);
  }
  if (Object.keys(c.changes).length > 0) w.emit('NodeUpdated', { changes: c.changes });
}

const viewAllocation = (s: NodeState) => (s.allocation ? { stack_id: s.allocation.stack_id, resource_name: s.allocation.resource_name } : null);

const DELETABLE = ['enroll', 'manageable', 'available', 'adopt failed'];

function remove(w: Working): void {
  const s = w.state;
  if (s.allocation) {
    throw errors.invalidState(`Node ${s.id} is claimed by stack ${s.allocation.stack_id} (${s.allocation.resource_name}); delete the stack resource first.`, s.provision_state, allowedActionsNow(s), { allocation: viewAllocation(s) });
  }
  if (!s.maintenance && !DELETABLE.includes(s.provision_state)) {
    throw errors.invalidState(`A node can be deleted only in ${DELETABLE.join(', ')} or while in maintenance; it is in "${s.provision_state}".`, s.provision_state, allowedActionsNow(s));
  }
  if (!s.maintenance && s.op) {
    throw errors.nodeBusy(`Node ${s.id} has task ${s.op.task_id} running.`, s.tasks[s.op.task_id] ?? null, s.provision_state);
  }
  for (const id of Object.keys(s.tasks)) w.emit('TaskCancelled', { task_id: id, reason: 'the node was deleted' });
  w.emit('NodeDeleted', {});
}
