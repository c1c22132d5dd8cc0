/** The rules around the machine (node-lifecycle.md): busy, maintenance, allowed actions. */
import {
  allowedVerbs, API_VERBS, MAINTENANCE_REFUSED_VERBS, nextProvisionState, stateInfo, type ApiVerb,
} from '../../../machines/node/node.model.js';
import { SYSTEM } from '../principal.js';
import { taskSummary } from '../tasks.js';
import type { NodeState } from './state.js';

export const POWER_REFUSED_STATES = ['cleaning', 'clean wait'];

/** A refusal as data, so the same check answers 409 now or fails a queued task later. */
export interface Refusal {
  code: 'invalid_state' | 'in_maintenance';
  message: string;
}

export function eventOfVerb(verb: string): string {
  return API_VERBS[verb as ApiVerb];
}

/** Can `verb` be applied from `provisionState` (with the maintenance flag)? */
export function checkVerb(provisionState: string, maintenance: boolean, verb: string): Refusal | null {
  if (maintenance && (MAINTENANCE_REFUSED_VERBS as readonly string[]).includes(verb)) {
    return { code: 'in_maintenance', message: `"${verb}" is refused while the node is in maintenance (state "${provisionState}").` };
  }
  if (nextProvisionState(provisionState, eventOfVerb(verb)) === null) {
    const allowed = allowedVerbs(provisionState);
    return {
      code: 'invalid_state',
      message: `"${verb}" is not allowed in state "${provisionState}"; allowed: ${allowed.length ? allowed.join(', ') : 'none'}.`,
    };
  }
  return null;
}

export function checkPower(provisionState: string): Refusal | null {
  if (POWER_REFUSED_STATES.includes(provisionState)) {
    return { code: 'invalid_state', message: `Power actions are not allowed in state "${provisionState}".` };
  }
  return null;
}

/** The task of the running operation if it blocks changes (any running operation does). */
export function busyOperationTask(s: NodeState): Record<string, unknown> | null {
  if (!s.op) return null;
  const t = s.tasks[s.op.task_id];
  return t ? taskSummary(t) : { id: s.op.task_id, action: s.op.action, state: 'running' };
}

/** Whether the running operation lets `verb` through now (wait/hold states accept their own events). */
export function verbPassesOperation(s: NodeState, verb: string): boolean {
  if (!s.op) return true;
  if (s.op.kind !== 'provision') return false;
  const kind = stateInfo(s.provision_state).kind;
  return (kind === 'wait' || kind === 'hold') && nextProvisionState(s.provision_state, eventOfVerb(verb)) !== null;
}

/**
 * A claimed node belongs to its stack resource: users' provision verbs are refused (the stack
 * drives it through SYSTEM), so a deploy or undeploy cannot pull the machine from under the stack.
 */
export function claimRefusal(s: NodeState, principal: string): string | null {
  if (!s.allocation || principal === SYSTEM.id) return null;
  return `Node ${s.id} is claimed by stack ${s.allocation.stack_id} (resource ${s.allocation.resource_name}); provision it through the stack, or delete the stack resource first.`;
}

/** The verbs the API accepts right now (api.md "allowed_actions"); none while a stack holds the node. */
export function allowedActionsNow(s: NodeState): string[] {
  if (s.allocation) return [];
  const kind = stateInfo(s.provision_state).kind;
  if (s.op && (kind === 'active' || s.op.kind === 'power')) return [];
  const verbs = allowedVerbs(s.provision_state) as string[];
  return s.maintenance ? verbs.filter((v) => !(MAINTENANCE_REFUSED_VERBS as readonly string[]).includes(v)) : verbs;
}

/** The state a queued command will meet: where the node is heading, or where it is. */
export function headingState(s: NodeState): string {
  return s.target_provision_state ?? s.provision_state;
}

/** Stable JSON for comparing command parameters (coalescing). */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    // A sealed secret compares by its keyed digest (the ciphertext differs on every seal).
    if (typeof o['$sealed'] === 'string' && typeof o['$digest'] === 'string') return JSON.stringify({ $digest: o['$digest'] });
    return `{${Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
