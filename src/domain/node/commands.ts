/** Commands a node actor decides on. They carry everything the decision needs (no IO inside). */
import type { CallbackAttempt, NodeEnrolledData } from '../../../machines/node/node.events.js';
import type { PowerTarget, StepOutcome } from '../../ports/driver.js';

export type OnBusy = 'reject' | 'queue';

export type NodeCommand =
  | { type: 'Enroll'; data: NodeEnrolledData }
  | { type: 'Update'; changes: Partial<Omit<NodeEnrolledData, 'owner' | 'driver'>>; if_match: number | null }
  | { type: 'Delete' }
  | {
      type: 'RequestProvision';
      verb: string;
      params: Record<string, unknown>;
      on_busy: OnBusy;
      callback_url: string | null;
      task_id: string;
    }
  | {
      type: 'RequestPower';
      target: PowerTarget;
      timeout_s: number | null;
      on_busy: OnBusy;
      callback_url: string | null;
      task_id: string;
    }
  | { type: 'SetMaintenance'; reason: string | null }
  | { type: 'UnsetMaintenance' }
  | { type: 'ReportStepOutcome'; op_id: string; step_id: string; outcome: StepOutcome }
  | { type: 'ReportPowerOutcome'; op_id: string; step_id: string; result: PowerResult }
  | { type: 'Heartbeat'; status: 'resume' | 'done' | 'fail'; message: string | null }
  | { type: 'ExpireDeadline'; op_id: string; deadline_at: string }
  | { type: 'CancelTask'; task_id: string; abort_task_id: string }
  | { type: 'ObservePower'; result: PowerResult }
  | ({ type: 'RecordCallbackAttempt' } & CallbackAttempt)
  /** A stack resource asks for this node (docs/node-lifecycle.md "Claims"); `owner` is the stack's tenant. */
  | { type: 'ClaimNode'; claim_id: string; stack_id: string; resource_name: string; owner: string }
  | { type: 'ReleaseNode'; claim_id: string };

export type PowerResult = { ok: true; power_state: 'power on' | 'power off' } | { ok: false; message: string };

export interface NodeDecideConfig {
  queueDepth: number;
  stepTimeoutS: number;
  callbackTimeoutS: number;
  holdTimeoutS: number;
  powerSyncFailures: number;
}

/** Everything a decision may depend on besides the state: time, ids, who asks, limits. */
export interface DecideContext {
  now: number;
  newId: () => string;
  principal: string;
  idempotency_key: string | null;
  config: NodeDecideConfig;
}

/** What a decision returns besides its events: the task the caller should see. */
export interface DecideResult {
  task_id: string | null;
  coalesced: boolean;
  /** The command changed nothing because it was stale or a duplicate (an ignored outcome). */
  ignored: boolean;
}
