/**
 * The node actor's state and its fold (evolve). The provision state moves only through the
 * XState machine (`nextProvisionState`); everything else is plain data carried beside it.
 * The same fold serves the actor, the read model and replay, so they cannot disagree.
 */
import { nextProvisionState, stateInfo } from '../../../machines/node/node.model.js';
import { machineEventOf, type NodeEvent } from '../../../machines/node/node.events.js';
import type { FoldInput } from '../decision.js';
import { applyTaskEvent, isTerminal, taskIdOf, type TaskRecord } from '../tasks.js';

export interface Operation {
  op_id: string;
  task_id: string;
  kind: 'provision' | 'power';
  action: string;
  /** The running driver step (work order), or null while waiting for a callback or held. */
  step_id: string | null;
  operation: string | null;
  phase: 'start' | 'resume' | null;
  deadline_at: string | null;
  manual_clean: boolean;
}

export interface NodeState {
  id: string;
  exists: boolean;
  deleted: boolean;
  name: string | null;
  owner: string;
  driver: 'fake' | 'ipmi';
  driver_info: Record<string, unknown>;
  resource_class: string;
  properties: Record<string, unknown>;
  traits: string[];
  provision_state: string;
  target_provision_state: string | null;
  power_state: 'power on' | 'power off' | null;
  target_power_state: string | null;
  maintenance: boolean;
  maintenance_reason: string | null;
  fault: string | null;
  last_error: string | null;
  allocation: { stack_id: string; resource_name: string; claim_id: string } | null;
  op: Operation | null;
  /** Queued task ids, in order. */
  queue: string[];
  /** Active (queued or running) tasks of this node. Finished tasks leave the actor state. */
  tasks: Record<string, TaskRecord>;
  power_sync_failures: number;
  revision: number;
  position: string | null;
  created_at: string | null;
  updated_at: string | null;
  provision_updated_at: string | null;
}

/** A stored event as the fold needs it. */
export type FoldEvent = FoldInput;

export function initialNodeState(id: string): NodeState {
  return {
    id, exists: false, deleted: false, name: null, owner: 'default', driver: 'fake', driver_info: {},
    resource_class: '', properties: {}, traits: [], provision_state: 'enroll', target_provision_state: null,
    power_state: null, target_power_state: null, maintenance: false, maintenance_reason: null, fault: null,
    last_error: null, allocation: null, op: null, queue: [], tasks: {}, power_sync_failures: 0,
    revision: -1, position: null, created_at: null, updated_at: null, provision_updated_at: null,
  };
}

/** Folds one stored event into the state. Throws if the log asks for a transition the machine refuses. */
export function evolveNode(prev: NodeState, stored: FoldEvent): NodeState {
  const e = { type: stored.type, data: stored.data } as NodeEvent;
  const s: NodeState = { ...prev, revision: stored.revision, position: stored.position, updated_at: stored.time };
  applyTasks(s, stored);
  const machineEvent = machineEventOf(e);
  if (machineEvent !== null) moveProvision(s, machineEvent, stored);
  applyData(s, e, stored.time);
  return s;
}

function moveProvision(s: NodeState, machineEvent: string, stored: FoldEvent): void {
  const next = nextProvisionState(s.provision_state, machineEvent);
  if (next === null) {
    throw new Error(`node ${s.id} revision ${stored.revision}: "${machineEvent}" is not accepted in "${s.provision_state}"`);
  }
  s.provision_state = next;
  s.provision_updated_at = stored.time;
}

function applyTasks(s: NodeState, stored: FoldEvent): void {
  const taskId = taskIdOf(stored);
  if (taskId === null) return;
  const before = s.tasks[taskId] ?? null;
  const after = applyTaskEvent(before, stored, { resource_type: 'node', resource_id: s.id, owner: s.owner });
  if (after === before) return;
  const tasks = { ...s.tasks };
  if (after === null || isTerminal(after.state)) delete tasks[taskId];
  else tasks[taskId] = after;
  s.tasks = tasks;
}

function applyData(s: NodeState, e: NodeEvent, time: string): void {
  switch (e.type) {
    case 'NodeEnrolled':
      Object.assign(s, {
        exists: true, name: e.data.name, owner: e.data.owner, driver: e.data.driver, driver_info: e.data.driver_info,
        resource_class: e.data.resource_class, properties: e.data.properties, traits: e.data.traits,
        created_at: time, provision_updated_at: time,
      });
      return;
    case 'NodeUpdated':
      Object.assign(s, e.data.changes);
      return;
    case 'NodeDeleted':
      s.deleted = true;
      return;
    case 'TaskCreated':
      if (e.data.queued) s.queue = [...s.queue, e.data.task_id];
      return;
    case 'TaskCancelled':
    case 'TaskFinished':
      s.queue = s.queue.filter((id) => id !== e.data.task_id);
      if (s.op && s.op.task_id === e.data.task_id) endOperation(s);
      return;
    case 'ProvisionActionStarted':
      startProvisionOp(s, e.data);
      return;
    case 'StepStarted':
      if (s.op) s.op = { ...s.op, step_id: e.data.step_id, operation: e.data.operation, phase: e.data.phase, deadline_at: e.data.deadline_at };
      return;
    case 'OperationWaiting':
    case 'OperationHeld':
      if (s.op) s.op = { ...s.op, step_id: null, operation: null, phase: null, deadline_at: e.data.deadline_at };
      return;
    case 'OperationResumed':
      if (s.op) s.op = { ...s.op, step_id: null, operation: null, phase: null, deadline_at: null };
      return;
    case 'OperationSucceeded':
      afterOutcome(s, null);
      return;
    case 'OperationFailed':
      afterOutcome(s, e.data.error.message);
      return;
    default:
      applyPowerAndFlags(s, e);
  }
}

function applyPowerAndFlags(s: NodeState, e: NodeEvent): void {
  switch (e.type) {
    case 'PowerActionStarted':
      s.queue = s.queue.filter((id) => id !== e.data.task_id);
      s.target_power_state = e.data.target_power_state;
      s.op = {
        op_id: e.data.op_id, task_id: e.data.task_id, kind: 'power', action: e.data.target, step_id: e.data.step_id,
        operation: 'power', phase: 'start', deadline_at: e.data.deadline_at, manual_clean: false,
      };
      return;
    case 'PowerActionSucceeded':
      s.power_state = e.data.power_state;
      s.target_power_state = null;
      return;
    case 'PowerActionFailed':
      s.target_power_state = null;
      s.last_error = e.data.error.message;
      return;
    case 'PowerStateObserved':
      s.power_state = e.data.power_state;
      return;
    case 'PowerSyncFailed':
      s.power_sync_failures = e.data.consecutive_failures;
      return;
    case 'PowerSyncRecovered':
      s.power_sync_failures = 0;
      return;
    case 'MaintenanceSet':
      s.maintenance = true;
      s.maintenance_reason = e.data.reason;
      // `fault` is what holds the node in maintenance. A user's MaintenanceSet (fault null) takes a
      // fault's maintenance over, so the BMC answering again must not clear it (api.md "Power faults").
      s.fault = e.data.fault;
      return;
    case 'MaintenanceUnset':
      s.maintenance = false;
      s.maintenance_reason = null;
      s.fault = null;
      return;
    case 'NodeClaimed':
      s.allocation = { stack_id: e.data.stack_id, resource_name: e.data.resource_name, claim_id: e.data.claim_id };
      return;
    case 'NodeReleased':
      s.allocation = null;
      return;
    default:
      return;
  }
}

function startProvisionOp(s: NodeState, d: NodeEvent & { type: 'ProvisionActionStarted' } extends { data: infer D } ? D : never): void {
  s.queue = s.queue.filter((id) => id !== d.task_id);
  s.target_provision_state = d.target_provision_state;
  if (d.action === 'manage' || d.action === 'provide' || d.action === 'deploy' || d.action === 'active' || d.action === 'rebuild') {
    s.last_error = null;
  }
  const kind = stateInfo(s.provision_state).kind;
  // unhold keeps the running operation; every other accepted verb takes over as the current operation.
  if (d.action === 'unhold' && s.op) {
    s.op = { ...s.op, step_id: null, operation: null, phase: null, deadline_at: d.deadline_at };
    return;
  }
  s.op = kind === 'stable' || kind === 'failed' ? null : {
    op_id: d.op_id, task_id: d.task_id, kind: 'provision', action: d.action, step_id: null, operation: null,
    phase: null, deadline_at: d.deadline_at, manual_clean: d.manual_clean,
  };
  if (s.op === null) settleTarget(s);
}

function afterOutcome(s: NodeState, error: string | null): void {
  if (error !== null) s.last_error = error;
  const kind = stateInfo(s.provision_state).kind;
  if (kind === 'stable' || kind === 'failed') {
    s.op = s.op && { ...s.op, step_id: null, operation: null, phase: null, deadline_at: null };
    settleTarget(s);
  } else if (s.op) {
    s.op = { ...s.op, step_id: null, operation: null, phase: null, deadline_at: null };
    if (s.provision_state === 'cleaning' && !s.op.manual_clean) s.target_provision_state = 'available';
  }
}

/** A stable state clears the target; a failure state keeps its family's target. */
function settleTarget(s: NodeState): void {
  const info = stateInfo(s.provision_state);
  if (info.kind === 'stable') s.target_provision_state = null;
  else if (info.kind === 'failed') s.target_provision_state = info.defaultTarget;
}

function endOperation(s: NodeState): void {
  if (s.op?.kind === 'power') s.target_power_state = null;
  s.op = null;
}
