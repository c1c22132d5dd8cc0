/** The public node view (api.md "Node view"): every field present, secrets redacted. */
import type { NodeState } from '../../domain/node/state.js';
import { allowedActionsNow } from '../../domain/node/rules.js';
import { redactSecrets } from '../../domain/secrets.js';
import { taskSummary } from '../../domain/tasks.js';

export function nodeView(s: NodeState) {
  const current = s.op ? s.tasks[s.op.task_id] : undefined;
  return {
    id: s.id,
    name: s.name,
    owner: s.owner,
    driver: s.driver,
    driver_info: redactSecrets(s.driver_info),
    resource_class: s.resource_class,
    properties: s.properties,
    traits: s.traits,
    provision_state: s.provision_state,
    target_provision_state: s.target_provision_state,
    power_state: s.power_state,
    target_power_state: s.target_power_state,
    maintenance: s.maintenance,
    maintenance_reason: s.maintenance_reason,
    fault: s.fault,
    last_error: s.last_error,
    allocation: s.allocation ? { stack_id: s.allocation.stack_id, resource_name: s.allocation.resource_name } : null,
    current_task: current ? taskSummary(current) : null,
    queued_tasks: s.queue.map((id) => s.tasks[id]).filter((t) => t !== undefined).map(taskSummary),
    allowed_actions: allowedActionsNow(s),
    revision: s.revision,
    created_at: s.created_at,
    updated_at: s.updated_at,
    provision_updated_at: s.provision_updated_at,
  };
}
