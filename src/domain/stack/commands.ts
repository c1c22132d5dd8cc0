/** Commands a stack actor decides on. They carry everything the decision needs (no IO inside). */
import type { CallbackAttempt, TaskError } from '../../../machines/node/node.events.js';
import type { Phase } from './graph.js';
import type { Template } from './template.js';

/** What a command that starts an operation carries about its task (api.md "Tasks"). */
export interface TaskRequest {
  task_id: string;
  callback_url: string | null;
}

/** A worker's report on one resource action (the answer to a `ResourceActionStarted` work order). */
export interface ResourceOutcomeReport {
  traversal_id: string;
  /** The work order's id; a report naming an action that is no longer in flight is ignored. */
  action_id: string;
  record_id: string;
  phase: Phase;
  outcome: 'complete' | 'failed';
  /** Physical id and attributes after a successful create/update (null for a delete or a failure). */
  outputs: { physical_id: string | null; attributes: Record<string, unknown> } | null;
  /** Why it failed (`no_capacity` for a scheduler without candidates, else what the plugin says). */
  error: TaskError | null;
}

export type StackCommand =
  | ({
      type: 'Create';
      name: string;
      owner: string;
      template: Template;
      timeout_s: number | null;
      rollback_on_failure: boolean | null;
    } & TaskRequest)
  /** A new traversal; null options keep the stack's (api.md "Stack options"). */
  | ({ type: 'Update'; template: Template; timeout_s: number | null; rollback_on_failure: boolean | null } & TaskRequest)
  | ({ type: 'Delete' } & TaskRequest)
  | ({ type: 'CancelUpdate' } & TaskRequest)
  | ({ type: 'Rollback' } & TaskRequest)
  | ({ type: 'ReportResourceOutcome' } & ResourceOutcomeReport)
  /** The durable stack timer fired for this traversal's deadline. */
  | { type: 'ExpireTimeout'; traversal_id: string; deadline_at: string }
  /** `POST /v1/stacks/{id}/resources/{name}/signal`: releases the newest held record of that name. */
  | { type: 'Signal'; name: string; status: 'complete' | 'fail'; reason: string | null }
  | ({ type: 'RecordCallbackAttempt' } & CallbackAttempt);

export interface StackDecideConfig {
  /** `timeout_s` of a stack created without one (docs/stacks.md: 3600). */
  defaultTimeoutS: number;
}

/** Everything a decision may depend on besides the state: time, ids, who asks, limits. */
export interface StackDecideContext {
  now: number;
  newId: () => string;
  principal: string;
  idempotency_key: string | null;
  config: StackDecideConfig;
}

/** What a decision returns besides its events: the task the caller should see. */
export interface StackDecideResult {
  task_id: string | null;
  coalesced: boolean;
  /** The command changed nothing because it was stale or a duplicate. */
  ignored: boolean;
}
