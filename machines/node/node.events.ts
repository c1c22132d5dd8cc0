/**
 * The events a node's stream records. These are domain events (what happened), not HTTP
 * commands. `machineEventOf` says which of them drive the provision machine and with which
 * machine event, so replay is a plain fold through the machine.
 */

export type TaskKind = 'provision' | 'power';
export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export interface TaskError {
  code: string;
  message: string;
}

export interface NodeEnrolledData {
  name: string | null;
  owner: string;
  driver: 'fake' | 'ipmi';
  /** Secret values are sealed ({"$sealed": "..."}); never clear text. */
  driver_info: Record<string, unknown>;
  resource_class: string;
  properties: Record<string, unknown>;
  traits: string[];
}

export interface NodeEventMap {
  NodeEnrolled: NodeEnrolledData;
  NodeUpdated: { changes: Partial<Omit<NodeEnrolledData, 'owner' | 'driver'>> };
  NodeDeleted: Record<string, never>;
  TaskCreated: {
    task_id: string;
    action: string;
    kind: TaskKind;
    params: Record<string, unknown>;
    callback_url: string | null;
    requested_by: string;
    idempotency_key: string | null;
    queued: boolean;
  };
  TaskCoalesced: { task_id: string; requested_by: string };
  TaskCancelled: { task_id: string; reason: string };
  TaskFinished: { task_id: string; state: 'succeeded' | 'failed' | 'cancelled'; error: TaskError | null };
  ProvisionActionStarted: {
    task_id: string;
    op_id: string;
    action: string;
    event: string;
    from: string;
    to: string;
    target_provision_state: string | null;
    manual_clean: boolean;
    /** Set when the action lands in a `* wait` / `* hold` state (e.g. unhold): that state's deadline. */
    deadline_at: string | null;
  };
  /** The work order: a driver step starts (its event id is the work order id). */
  StepStarted: { op_id: string; step_id: string; operation: string; phase: 'start' | 'resume'; deadline_at: string };
  OperationWaiting: { op_id: string; deadline_at: string; from: string; to: string };
  OperationHeld: { op_id: string; deadline_at: string; from: string; to: string };
  OperationResumed: { op_id: string; from: string; to: string; via: 'heartbeat' };
  OperationSucceeded: { op_id: string; event: 'done' | 'clean' | 'manage'; from: string; to: string };
  OperationFailed: { op_id: string; event: 'fail' | 'abort'; error: TaskError; from: string; to: string };
  PowerActionStarted: { task_id: string; op_id: string; step_id: string; target: string; target_power_state: string; deadline_at: string };
  PowerActionSucceeded: { op_id: string; power_state: 'power on' | 'power off' };
  PowerActionFailed: { op_id: string; error: TaskError };
  PowerStateObserved: { power_state: 'power on' | 'power off'; previous: string | null };
  PowerSyncFailed: { consecutive_failures: number; message: string };
  PowerSyncRecovered: { after_failures: number };
  MaintenanceSet: { reason: string | null; fault: string | null };
  MaintenanceUnset: { fault_cleared: string | null };
  NodeClaimed: { stack_id: string; resource_name: string; claim_id: string };
  NodeReleased: { stack_id: string; resource_name: string; claim_id: string };
  CallbackAttempted: CallbackAttempt;
}

/** One delivery attempt of a terminal task's callback (webhook). */
export interface CallbackAttempt {
  task_id: string;
  attempt: number;
  outcome: 'delivered' | 'failed';
  final: boolean;
  status_code: number | null;
  error: string | null;
  next_attempt_at: string | null;
}

export type NodeEventType = keyof NodeEventMap;
export const NODE_EVENT_TYPES = [
  'NodeEnrolled', 'NodeUpdated', 'NodeDeleted', 'TaskCreated', 'TaskCoalesced', 'TaskCancelled', 'TaskFinished',
  'ProvisionActionStarted', 'StepStarted', 'OperationWaiting', 'OperationHeld', 'OperationResumed',
  'OperationSucceeded', 'OperationFailed', 'PowerActionStarted', 'PowerActionSucceeded', 'PowerActionFailed',
  'PowerStateObserved', 'PowerSyncFailed', 'PowerSyncRecovered', 'MaintenanceSet', 'MaintenanceUnset',
  'NodeClaimed', 'NodeReleased', 'CallbackAttempted',
] as const satisfies readonly NodeEventType[];

export type NodeEvent = { [K in NodeEventType]: { type: K; data: NodeEventMap[K] } }[NodeEventType];

/** The provision-machine event a stored node event fires, or null if it does not drive the provision machine. */
export function machineEventOf(e: NodeEvent): string | null {
  switch (e.type) {
    case 'ProvisionActionStarted':
      return e.data.event;
    case 'OperationWaiting':
      return 'wait';
    case 'OperationHeld':
      return 'hold';
    case 'OperationResumed':
      return 'resume';
    case 'OperationSucceeded':
      return e.data.event;
    case 'OperationFailed':
      return e.data.event;
    default:
      return null;
  }
}
