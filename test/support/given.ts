/**
 * Given/when/then for the node decider (style.md habit 6):
 *
 *   given(history.deploying()).when(cmd.step('deploy', done)).then(['OperationSucceeded', 'TaskFinished']);
 *   given(history.deploying()).when(cmd.provision('manage')).thenThrows('invalid_state', { allowed_actions: [] });
 *
 * `given` folds recorded events through `evolveNode` (revisions 0, 1, 2..., one fixed time), and
 * `when` calls `decideNode` with a fixed `now`, sequential ids (`gen-1`, `gen-2`...), principal
 * `test` and the default config. Everything is pure: no store, no clock, no sleeping.
 *
 * The `history` builders write the events a decider would have recorded, with readable fixed ids
 * (`task-deploy`, `op-deploy`, `step-deploy`...), so commands about them can be written by hand.
 */
import { expect } from 'vitest';
import type { NodeEnrolledData, NodeEvent, NodeEventType, TaskError } from '../../machines/node/node.events.js';
import { API_VERBS, DRIVER_OPERATION_FOR_STATE, nextProvisionState, stateInfo, type ApiVerb } from '../../machines/node/node.model.js';
import type { DecideContext, NodeCommand, NodeDecideConfig, OnBusy, PowerResult } from '../../src/domain/node/commands.js';
import { decideNode, type Decision } from '../../src/domain/node/decide.js';
import { evolveNode, initialNodeState, type NodeState } from '../../src/domain/node/state.js';
import { IroncladError, type ErrorCode } from '../../src/domain/errors.js';
import type { PowerTarget, StepOutcome } from '../../src/ports/driver.js';

export const NODE_ID = 'node-1';
/** The time of every given event. */
export const EVENT_TIME = '2026-01-01T00:00:00.000Z';
/** The decision's `now`: one hour after the given events. */
export const NOW = Date.parse('2026-01-01T01:00:00.000Z');
/** ISO time `seconds` after NOW (deadlines of decisions). */
export const at = (seconds: number): string => new Date(NOW + seconds * 1000).toISOString();
/** ISO time `seconds` after EVENT_TIME (deadlines written in given histories). */
export const atEvent = (seconds: number): string => new Date(Date.parse(EVENT_TIME) + seconds * 1000).toISOString();

export const DEFAULT_CONFIG: NodeDecideConfig = Object.freeze({
  queueDepth: 16,
  stepTimeoutS: 3600,
  callbackTimeoutS: 1800,
  holdTimeoutS: 86400,
  powerSyncFailures: 3,
});

export const ENROLL_DATA: NodeEnrolledData = Object.freeze({
  name: 'node-a',
  owner: 'acme',
  driver: 'fake',
  driver_info: {},
  resource_class: 'baremetal',
  properties: { cpus: 8, memory_mb: 16384, local_gb: 100 },
  traits: [],
}) as NodeEnrolledData;

export interface GivenOptions {
  id?: string;
  now?: number;
  principal?: string;
  idempotencyKey?: string | null;
  config?: Partial<NodeDecideConfig>;
}

/** An expected event: its type alone, or its type with a partial (matcher-friendly) data. */
export type ExpectedEvent = NodeEventType | { type: NodeEventType; data?: Record<string, unknown> };

export interface When {
  /** Runs the decision and asserts the emitted events, in order (types, then partial data). */
  then(expected: readonly ExpectedEvent[]): Decision;
  /** Asserts the decision refuses with `code` (and extensions matching `extensions`). */
  thenThrows(code: ErrorCode, extensions?: Record<string, unknown>): IroncladError;
  /** Asserts a stale command: no events and `result.ignored`. */
  thenIgnored(): Decision;
  /** Runs the decision without asserting anything. */
  decide(): Decision;
}

export interface Given {
  /** The folded state the command will meet. */
  readonly state: NodeState;
  when(command: NodeCommand): When;
}

/** Folds events (type + data) as they would be stored: revision 0, 1, 2... at EVENT_TIME. */
export function foldNode(events: readonly NodeEvent[], id = NODE_ID, start: NodeState = initialNodeState(id), time = EVENT_TIME): NodeState {
  let state = start;
  for (const e of events) {
    state = evolveNode(state, { type: e.type, data: e.data as Record<string, unknown>, time, revision: state.revision + 1, position: null });
  }
  return state;
}

/** A decide context with a fixed clock and sequential ids `gen-1`, `gen-2`... */
export function decideContext(opts: GivenOptions = {}): DecideContext {
  let n = 0;
  return {
    now: opts.now ?? NOW,
    newId: () => `gen-${++n}`,
    principal: opts.principal ?? 'test',
    idempotency_key: opts.idempotencyKey ?? null,
    config: { ...DEFAULT_CONFIG, ...opts.config },
  };
}

export function given(events: readonly NodeEvent[], opts: GivenOptions = {}): Given {
  const state = foldNode(events, opts.id ?? NODE_ID);
  return {
    state,
    when(command) {
      const run = (): Decision => decideNode(command, state, decideContext(opts));
      return {
        decide: run,
        then(expected) {
          const d = run();
          const want = expected.map((e) => (typeof e === 'string' ? { type: e } : e));
          expect(d.events.map((e) => e.type), 'event types').toEqual(want.map((e) => e.type));
          expect(d.events).toMatchObject(want);
          // The decider's own state must be exactly the fold of what it emitted (the log is the truth).
          expect(d.state).toEqual(foldNode(d.events, state.id, state, new Date(opts.now ?? NOW).toISOString()));
          return d;
        },
        thenThrows(code, extensions) {
          let thrown: unknown = null;
          try {
            run();
          } catch (err) {
            thrown = err;
          }
          expect(thrown, `expected IroncladError ${code}`).toBeInstanceOf(IroncladError);
          const err = thrown as IroncladError;
          expect(err.code).toBe(code);
          if (extensions) expect(err.extensions).toMatchObject(extensions);
          return err;
        },
        thenIgnored() {
          const d = run();
          expect(d.events).toEqual([]);
          expect(d.result.ignored).toBe(true);
          return d;
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Event builders: the events of a node's stream, with readable ids.

type Ev<K extends NodeEventType> = Extract<NodeEvent, { type: K }>;
const e = <K extends NodeEventType>(type: K, data: Ev<K>['data']): Ev<K> => ({ type, data }) as Ev<K>;

export const ev = {
  enrolled: (over: Partial<NodeEnrolledData> = {}) => e('NodeEnrolled', { ...ENROLL_DATA, ...over }),
  taskCreated: (taskId: string, action: string, o: { kind?: 'provision' | 'power'; params?: Record<string, unknown>; queued?: boolean } = {}) =>
    e('TaskCreated', {
      task_id: taskId, action, kind: o.kind ?? 'provision', params: o.params ?? {}, callback_url: null,
      requested_by: 'someone', idempotency_key: null, queued: o.queued ?? false,
    }),
  taskFinished: (taskId: string, state: 'succeeded' | 'failed' | 'cancelled' = 'succeeded', error: TaskError | null = null) =>
    e('TaskFinished', { task_id: taskId, state, error }),
  taskCancelled: (taskId: string, reason = 'cancelled by someone') => e('TaskCancelled', { task_id: taskId, reason }),
  /** ProvisionActionStarted for `verb` from `from`; target and `to` come from the machine. */
  actionStarted: (taskId: string, opId: string, verb: ApiVerb, from: string, deadlineAt: string | null = null) => {
    const event = API_VERBS[verb];
    const to = nextProvisionState(from, event);
    if (to === null) throw new Error(`history: ${verb} is not accepted in ${from}`);
    const manual = verb === 'clean' && from === 'manageable';
    return e('ProvisionActionStarted', {
      task_id: taskId, op_id: opId, action: verb, event, from, to,
      target_provision_state: manual ? 'manageable' : stateInfo(to).defaultTarget, manual_clean: manual, deadline_at: deadlineAt,
    });
  },
  stepStarted: (opId: string, stepId: string, state: string, phase: 'start' | 'resume' = 'start', deadlineAt = atEvent(3600)) =>
    e('StepStarted', {
      op_id: opId, step_id: stepId, operation: DRIVER_OPERATION_FOR_STATE[state as keyof typeof DRIVER_OPERATION_FOR_STATE], phase, deadline_at: deadlineAt,
    }),
  waiting: (opId: string, from: string, deadlineAt = atEvent(1800)) => e('OperationWaiting', { op_id: opId, from, to: must(from, 'wait'), deadline_at: deadlineAt }),
  held: (opId: string, from: string, deadlineAt = atEvent(86400)) => e('OperationHeld', { op_id: opId, from, to: must(from, 'hold'), deadline_at: deadlineAt }),
  resumed: (opId: string, from: string) => e('OperationResumed', { op_id: opId, from, to: must(from, 'resume'), via: 'heartbeat' }),
  succeeded: (opId: string, from: string, event: 'done' | 'clean' | 'manage' = 'done') => e('OperationSucceeded', { op_id: opId, event, from, to: must(from, event) }),
  failed: (opId: string, from: string, message = 'boom', event: 'fail' | 'abort' = 'fail', code = 'driver_error') =>
    e('OperationFailed', { op_id: opId, event, error: { code, message }, from, to: must(from, event) }),
  powerStarted: (taskId: string, opId: string, stepId: string, target: PowerTarget = 'power on', deadlineAt = atEvent(3600)) =>
    e('PowerActionStarted', {
      task_id: taskId, op_id: opId, step_id: stepId, target,
      target_power_state: target === 'power off' || target === 'soft power off' ? 'power off' : 'power on', deadline_at: deadlineAt,
    }),
  powerSucceeded: (opId: string, powerState: 'power on' | 'power off') => e('PowerActionSucceeded', { op_id: opId, power_state: powerState }),
  powerObserved: (powerState: 'power on' | 'power off', previous: string | null = null) => e('PowerStateObserved', { power_state: powerState, previous }),
  syncFailed: (n: number, message = 'BMC unreachable') => e('PowerSyncFailed', { consecutive_failures: n, message }),
  maintenanceSet: (reason: string | null = 'by hand', fault: string | null = null) => e('MaintenanceSet', { reason, fault }),
  maintenanceUnset: (faultCleared: string | null = null) => e('MaintenanceUnset', { fault_cleared: faultCleared }),
  claimed: (stackId = 'stack-1', resourceName = 'server', claimId = 'claim-1') => e('NodeClaimed', { stack_id: stackId, resource_name: resourceName, claim_id: claimId }),
};

function must(from: string, event: string): string {
  const to = nextProvisionState(from, event);
  if (to === null) throw new Error(`history: ${event} is not accepted in ${from}`);
  return to;
}

/** Fixed ids used by the history builders for an operation started by `verb`. */
export const idsOf = (verb: string) => ({ task: `task-${verb}`, op: `op-${verb}`, step: `step-${verb}` });

/**
 * The events of `verb` accepted from `from` (task created and started), plus the first driver
 * step when the verb lands in an active state. Ids are `idsOf(verb)`.
 */
export function started(verb: ApiVerb, from: string, params: Record<string, unknown> = {}): NodeEvent[] {
  const id = idsOf(verb);
  const act = ev.actionStarted(id.task, id.op, verb, from);
  const out: NodeEvent[] = [ev.taskCreated(id.task, verb, { params }), act];
  if (stateInfo(act.data.to).kind === 'active') out.push(ev.stepStarted(id.op, id.step, act.data.to));
  return out;
}

/** A whole operation from `from` that ends well: started, driver step done, task succeeded. */
export function completed(verb: ApiVerb, from: string): NodeEvent[] {
  const id = idsOf(verb);
  const out = started(verb, from);
  let state = (out[1] as Ev<'ProvisionActionStarted'>).data.to;
  if (stateInfo(state).kind === 'active') {
    // deleting goes on to cleaning with `clean`; a manual clean ends with `manage`.
    const event = state === 'deleting' ? 'clean' : verb === 'clean' && from === 'manageable' ? 'manage' : 'done';
    out.push(ev.succeeded(id.op, state, event));
    state = must(state, event);
    if (state === 'cleaning') {
      out.push(ev.stepStarted(id.op, `${id.step}-2`, 'cleaning'), ev.succeeded(id.op, 'cleaning'));
    }
  }
  out.push(ev.taskFinished(id.task));
  return out;
}

/** A queued task (TaskCreated with queued: true). */
export const queued = (taskId: string, action: string, o: { kind?: 'provision' | 'power'; params?: Record<string, unknown> } = {}): NodeEvent =>
  ev.taskCreated(taskId, action, { ...o, queued: true });

/** Common histories, each ending in the state its name says. */
export const history = {
  enrolled: (over: Partial<NodeEnrolledData> = {}): NodeEvent[] => [ev.enrolled(over)],
  verifying: (): NodeEvent[] => [...history.enrolled(), ...started('manage', 'enroll')],
  manageable: (): NodeEvent[] => [...history.enrolled(), ...completed('manage', 'enroll')],
  /** manageable → provide: cleaning, with the clean step `step-provide` running. */
  cleaning: (): NodeEvent[] => [...history.manageable(), ...started('provide', 'manageable')],
  /** manageable → clean: a manual clean (targets manageable), step `step-clean` running. */
  manualCleaning: (): NodeEvent[] => [...history.manageable(), ...started('clean', 'manageable')],
  cleanWait: (): NodeEvent[] => [...history.cleaning(), ev.waiting('op-provide', 'cleaning')],
  cleanHold: (): NodeEvent[] => [...history.cleaning(), ev.held('op-provide', 'cleaning')],
  inspecting: (): NodeEvent[] => [...history.manageable(), ...started('inspect', 'manageable')],
  inspectWait: (): NodeEvent[] => [...history.inspecting(), ev.waiting('op-inspect', 'inspecting')],
  available: (): NodeEvent[] => [...history.manageable(), ...completed('provide', 'manageable')],
  /** available → deploy: deploying, with the deploy step `step-deploy` running (task `task-deploy`). */
  deploying: (params: Record<string, unknown> = {}): NodeEvent[] => [...history.available(), ...started('deploy', 'available', params)],
  waitCallBack: (): NodeEvent[] => [...history.deploying(), ev.waiting('op-deploy', 'deploying')],
  deployHold: (): NodeEvent[] => [...history.deploying(), ev.held('op-deploy', 'deploying')],
  deployFailed: (): NodeEvent[] => [
    ...history.deploying(), ev.failed('op-deploy', 'deploying', 'image not found'),
    ev.taskFinished('task-deploy', 'failed', { code: 'driver_error', message: 'image not found' }),
  ],
  active: (): NodeEvent[] => [...history.available(), ...completed('deploy', 'available')],
  /** active → undeploy: deleting, with the teardown step `step-undeploy` running. */
  deleting: (): NodeEvent[] => [...history.active(), ...started('undeploy', 'active')],
  rescuing: (): NodeEvent[] => [...history.active(), ...started('rescue', 'active')],
  servicing: (): NodeEvent[] => [...history.active(), ...started('service', 'active')],
  /** available with a power action running (task `task-power`, op `op-power`, step `step-power`). */
  powering: (target: PowerTarget = 'power on'): NodeEvent[] => [
    ...history.available(),
    ev.taskCreated('task-power', target, { kind: 'power' }),
    ev.powerStarted('task-power', 'op-power', 'step-power', target),
  ],
};

// ---------------------------------------------------------------------------------------------
// Command builders.

export const cmd = {
  enroll: (over: Partial<NodeEnrolledData> = {}): NodeCommand => ({ type: 'Enroll', data: { ...ENROLL_DATA, ...over } }),
  update: (changes: Extract<NodeCommand, { type: 'Update' }>['changes'], ifMatch: number | null = null): NodeCommand => ({ type: 'Update', changes, if_match: ifMatch }),
  delete: (): NodeCommand => ({ type: 'Delete' }),
  provision: (verb: string, o: { on_busy?: OnBusy; params?: Record<string, unknown>; task_id?: string; callback_url?: string | null } = {}): NodeCommand => ({
    type: 'RequestProvision', verb, params: o.params ?? {}, on_busy: o.on_busy ?? 'reject', callback_url: o.callback_url ?? null, task_id: o.task_id ?? 'task-new',
  }),
  power: (target: PowerTarget, o: { on_busy?: OnBusy; timeout_s?: number | null; task_id?: string } = {}): NodeCommand => ({
    type: 'RequestPower', target, timeout_s: o.timeout_s ?? null, on_busy: o.on_busy ?? 'reject', callback_url: null, task_id: o.task_id ?? 'task-new',
  }),
  step: (verb: string, outcome: StepOutcome, stepId = idsOf(verb).step, opId = idsOf(verb).op): NodeCommand => ({
    type: 'ReportStepOutcome', op_id: opId, step_id: stepId, outcome,
  }),
  powerOutcome: (result: PowerResult, opId = 'op-power', stepId = 'step-power'): NodeCommand => ({ type: 'ReportPowerOutcome', op_id: opId, step_id: stepId, result }),
  heartbeat: (status: 'resume' | 'done' | 'fail', message: string | null = null): NodeCommand => ({ type: 'Heartbeat', status, message }),
  expire: (opId: string, deadlineAt: string): NodeCommand => ({ type: 'ExpireDeadline', op_id: opId, deadline_at: deadlineAt }),
  cancel: (taskId: string, abortTaskId = 'task-abort'): NodeCommand => ({ type: 'CancelTask', task_id: taskId, abort_task_id: abortTaskId }),
  setMaintenance: (reason: string | null = 'disk swap'): NodeCommand => ({ type: 'SetMaintenance', reason }),
  unsetMaintenance: (): NodeCommand => ({ type: 'UnsetMaintenance' }),
  observe: (result: PowerResult): NodeCommand => ({ type: 'ObservePower', result }),
};

export const done: StepOutcome = { kind: 'done' };
export const waitOutcome: StepOutcome = { kind: 'wait' };
export const holdOutcome: StepOutcome = { kind: 'hold' };
export const failOutcome = (message = 'disk on fire'): StepOutcome => ({ kind: 'fail', message });
