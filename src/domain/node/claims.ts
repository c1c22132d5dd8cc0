/**
 * Claims (docs/node-lifecycle.md "Claims"): a stack resource takes a node for itself. The node
 * actor decides against its own stream, so of two schedulers racing for one node exactly one is
 * granted and the other gets a refusal it can act on (try the next candidate).
 */
import { errors } from '../errors.js';
import type { NodeCommand } from './commands.js';
import type { Working } from './working.js';
import { allowedActionsNow, busyOperationTask } from './rules.js';

type Cmd<T extends NodeCommand['type']> = Extract<NodeCommand, { type: T }>;

/**
 * Grants the claim only on a node of the same owner that is `available`, not in maintenance,
 * idle (nothing running or queued) and unclaimed. The same claim (id, stack and resource) again
 * is an idempotent success (no event). Refusals: `not_found` (another tenant's node is invisible, as in the API),
 * `invalid_state` (claimed by someone else, or not `available`), `in_maintenance`, `node_busy`.
 */
export function claimNode(w: Working, c: Cmd<'ClaimNode'>): void {
  const s = w.state;
  if (s.owner !== c.owner) throw errors.notFound('Node', s.id);
  if (s.allocation) {
    const a = s.allocation;
    if (a.claim_id === c.claim_id && a.stack_id === c.stack_id && a.resource_name === c.resource_name) {
      w.result.ignored = true;
      return;
    }
    throw errors.invalidState(
      `Node ${s.id} is already claimed by stack ${s.allocation.stack_id} (resource ${s.allocation.resource_name}).`,
      s.provision_state, allowedActionsNow(s), { allocation: { stack_id: s.allocation.stack_id, resource_name: s.allocation.resource_name } },
    );
  }
  if (s.maintenance) {
    throw errors.inMaintenance(`Node ${s.id} is in maintenance${s.maintenance_reason ? ` (${s.maintenance_reason})` : ''}; it cannot be claimed.`, s.provision_state, allowedActionsNow(s));
  }
  const blocking = busyOperationTask(s);
  if (blocking || s.queue.length > 0) {
    throw errors.nodeBusy(`Node ${s.id} has ${blocking ? `task ${s.op!.task_id} running` : `${s.queue.length} queued task(s)`}; it cannot be claimed.`, blocking, s.provision_state);
  }
  if (s.provision_state !== 'available') {
    throw errors.invalidState(`Node ${s.id} is in "${s.provision_state}"; only an "available" node can be claimed.`, s.provision_state, allowedActionsNow(s));
  }
  w.emit('NodeClaimed', { stack_id: c.stack_id, resource_name: c.resource_name, claim_id: c.claim_id });
}

/**
 * Releases the claim `claim_id`. Releasing a node that holds no claim is an idempotent success
 * (no event); a node held by another claim is refused with `invalid_state`.
 */
export function releaseNode(w: Working, c: Cmd<'ReleaseNode'>): void {
  const a = w.state.allocation;
  if (!a) {
    w.result.ignored = true;
    return;
  }
  if (a.claim_id !== c.claim_id) {
    throw errors.invalidState(
      `Node ${w.state.id} is held by another claim (stack ${a.stack_id}, resource ${a.resource_name}); claim ${c.claim_id} cannot release it.`,
      w.state.provision_state, allowedActionsNow(w.state), { allocation: { stack_id: a.stack_id, resource_name: a.resource_name } },
    );
  }
  w.emit('NodeReleased', { stack_id: a.stack_id, resource_name: a.resource_name, claim_id: a.claim_id });
}
