/**
 * The events a stack's stream records: domain facts, never HTTP commands. `machineEventOf` says
 * which of them move the stack machine and with which event, so replay is a plain fold.
 *
 * The work orders are `ResourceActionStarted` events: each carries everything its worker needs
 * (resolved properties, inputs from the predecessors, the deadline), so a worker never re-reads
 * the stack. Its `action_id` identifies it: reports naming another id are stale or duplicates.
 */
import type { CallbackAttempt, TaskError } from '../node/node.events.js';
import type { Graph, NewRecord, NodeOutput, Phase } from '../../src/domain/stack/graph.js';
import type { ResourceDefinition, Template } from '../../src/domain/stack/template.js';
import type { ResourceAction } from '../../src/domain/stack/resource-types.js';
import type { StackAction, StackMachineEventType } from './stack.machine.js';

export type { TaskError };

/** Why a traversal failed: a resource action, the stack timeout, or `cancel_update`. */
export type FailureCause = 'resource' | 'timeout' | 'cancel';

export interface StackEventMap {
  StackCreateRequested: { name: string; owner: string };
  /** A new traversal: converge to `template`. Supersedes any running one. */
  TraversalStarted: {
    traversal_id: string;
    action: StackAction;
    template: Template;
    /** The same id for the same template: a rollback reuses the id of the template it restores. */
    template_id: string;
    /** The template the stack was converging to before (null before the first). */
    previous_template: Template | null;
    previous_template_id: string | null;
    graph: Graph;
    /** Records created for resources that had none (INIT_COMPLETE). */
    new_records: NewRecord[];
    /** Effective options from now on (an update without them keeps the stack's). */
    timeout_s: number;
    rollback_on_failure: boolean;
    deadline_at: string;
    /** The task that ends with this traversal (an automatic rollback inherits the failed one's). */
    task_id: string | null;
    /** Set when the task must fail even if this traversal completes (automatic rollback). */
    task_error: TaskError | null;
  };
  /** A replacement record, created when an update cannot be done in place. */
  ResourceRecordCreated: { traversal_id: string; record_id: string; name: string; type: string; replaces: string | null };
  /** The work order: one resource action of one graph node. */
  ResourceActionStarted: {
    traversal_id: string;
    action_id: string;
    /** The graph node this action reports for (a replacement acts for the replaced record's node). */
    node_record_id: string;
    phase: Phase;
    record_id: string;
    name: string;
    type: string;
    action: ResourceAction;
    template_id: string;
    /** The definition being applied (null for a delete). */
    definition: ResourceDefinition | null;
    /** Resolved properties: the new ones for create/update, the record's own for delete. */
    properties: Record<string, unknown>;
    previous_properties: Record<string, unknown> | null;
    physical_id: string | null;
    requires: string[];
    requires_names: string[];
    inputs: Record<string, NodeOutput>;
    /** The action stays IN_PROGRESS after the worker's success until a signal (`hold_on`). */
    hold: boolean;
    deadline_at: string;
  };
  /** The worker succeeded on a held action; its outputs wait for the signal. */
  ResourceActionHeld: { action_id: string; record_id: string; physical_id: string | null; attributes: Record<string, unknown> };
  ResourceSignalled: { action_id: string; record_id: string; name: string; status: 'complete' | 'fail'; reason: string | null };
  ResourceActionCompleted: { traversal_id: string; action_id: string; record_id: string; physical_id: string | null; attributes: Record<string, unknown> };
  ResourceActionFailed: { traversal_id: string; action_id: string; record_id: string; error: TaskError };
  /** An update node that needed no action: the record is adopted by the traversal's template. */
  ResourceUnchanged: {
    traversal_id: string;
    record_id: string;
    template_id: string;
    definition: ResourceDefinition;
    requires: string[];
    requires_names: string[];
  };
  /** Cleanup nodes that needed no action (batched: one event per decision). */
  CleanupSkipped: { traversal_id: string; records: { record_id: string; why: 'current' | 'never_built' | 'already_deleted' }[] };
  TraversalCompleted: { traversal_id: string; action: StackAction; outputs: Record<string, unknown> };
  TraversalFailed: { traversal_id: string; action: StackAction; cause: FailureCause; reason: string; error: TaskError };
  /** After the delete traversal completed: the stack stays readable as DELETE_COMPLETE. */
  StackDeleted: Record<string, never>;
  TaskCreated: {
    task_id: string;
    action: string;
    kind: 'stack';
    params: Record<string, unknown>;
    callback_url: string | null;
    requested_by: string;
    idempotency_key: string | null;
    queued: false;
  };
  TaskCoalesced: { task_id: string; requested_by: string };
  TaskFinished: { task_id: string; state: 'succeeded' | 'failed' | 'cancelled'; error: TaskError | null };
  CallbackAttempted: CallbackAttempt;
}

export type StackEventType = keyof StackEventMap;
export const STACK_EVENT_TYPES = [
  'StackCreateRequested', 'TraversalStarted', 'ResourceRecordCreated', 'ResourceActionStarted', 'ResourceActionHeld',
  'ResourceSignalled', 'ResourceActionCompleted', 'ResourceActionFailed', 'ResourceUnchanged', 'CleanupSkipped',
  'TraversalCompleted', 'TraversalFailed', 'StackDeleted', 'TaskCreated', 'TaskCoalesced', 'TaskFinished', 'CallbackAttempted',
] as const satisfies readonly StackEventType[];

export type StackEvent = { [K in StackEventType]: { type: K; data: StackEventMap[K] } }[StackEventType];

const CAUSE_EVENT: Record<FailureCause, StackMachineEventType> = { resource: 'fail', timeout: 'timeout', cancel: 'cancel' };

/** The stack-machine event a stored stack event fires, or null if it does not move the status. */
export function machineEventOf(e: StackEvent): StackMachineEventType | null {
  switch (e.type) {
    case 'TraversalStarted':
      return e.data.action === 'CREATE' ? 'create' : e.data.action === 'UPDATE' ? 'update' : e.data.action === 'DELETE' ? 'delete' : 'rollback';
    case 'TraversalCompleted':
      return 'complete';
    case 'TraversalFailed':
      return CAUSE_EVENT[e.data.cause];
    default:
      return null;
  }
}
