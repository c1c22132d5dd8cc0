/**
 * The node machine: Ironic's provision state machine, state for state and edge for edge
 * (docs/node-lifecycle.md), plus the recorded power state and the maintenance flag.
 *
 * This is the one definition. `allowed_actions`, `GET /v1/machines/node`, validation, docs and
 * diagrams are all derived from it (see node.model.ts). It is pure: no guards, no actions, no
 * context. Rules that depend on more than the provision state (busy, maintenance, claims) are
 * applied by the runtime around it.
 */
import { setup } from 'xstate';

/** The 18 provision events, API-named and internal alike (in the spec's order). */
export const PROVISION_EVENTS = [
  'manage', 'provide', 'inspect', 'clean', 'adopt', 'rescue', 'unrescue', 'abort', 'unhold',
  'service', 'rebuild', 'deploy', 'delete', 'done', 'fail', 'wait', 'resume', 'hold',
] as const;
export type ProvisionEvent = (typeof PROVISION_EVENTS)[number];

/** Events of the power region: the real power state as recorded (a sync or a finished power task). */
export type PowerEvent = { type: 'power.on' } | { type: 'power.off' };
/** Events of the maintenance region. */
export type MaintenanceEvent = { type: 'maintenance.set' } | { type: 'maintenance.unset' };
/** Every event the node machine takes. */
export type NodeMachineEvent = { type: ProvisionEvent } | PowerEvent | MaintenanceEvent;

/** How a provision state behaves; the runtime's busy rules key off this. */
export const STATE_KINDS = ['stable', 'active', 'wait', 'hold', 'failed'] as const;
export type StateKind = (typeof STATE_KINDS)[number];

/** The `meta` of every provision state. */
export interface ProvisionStateMeta {
  /** Only changes on a request (true exactly when `kind` is `stable`). */
  stable: boolean;
  /** What `target_provision_state` shows while the node is in this state. */
  defaultTarget: string | null;
  kind: StateKind;
}

/** Builds a state's meta so that `stable` can never disagree with `kind`. */
function meta(kind: StateKind, defaultTarget: string | null = null): ProvisionStateMeta {
  return { stable: kind === 'stable', defaultTarget, kind };
}

/** The node machine (parallel: `provision`, `power`, `maintenance`). */
export const nodeMachine = setup({
  types: {
    events: {} as NodeMachineEvent,
    meta: {} as ProvisionStateMeta,
  },
}).createMachine({
  id: 'node',
  type: 'parallel',
  states: {
    provision: {
      initial: 'enroll',
      states: {
        enroll: { meta: meta('stable'), on: { manage: 'verifying' } },
        manageable: {
          meta: meta('stable'),
          on: { provide: 'cleaning', clean: 'cleaning', inspect: 'inspecting', adopt: 'adopting' },
        },
        available: { meta: meta('stable'), on: { deploy: 'deploying', manage: 'manageable' } },
        active: {
          meta: meta('stable'),
          on: { rebuild: 'deploying', delete: 'deleting', rescue: 'rescuing', service: 'servicing' },
        },
        error: { meta: meta('stable'), on: { rebuild: 'deploying', delete: 'deleting' } },
        rescue: {
          meta: meta('stable'),
          on: { rescue: 'rescuing', delete: 'deleting', unrescue: 'unrescuing' },
        },
        verifying: { meta: meta('active', 'manageable'), on: { done: 'manageable', fail: 'enroll' } },
        deploying: {
          meta: meta('active', 'active'),
          on: { fail: 'deploy failed', wait: 'wait call-back', hold: 'deploy hold', done: 'active' },
        },
        'wait call-back': {
          meta: meta('wait', 'active'),
          on: {
            hold: 'deploy hold',
            resume: 'deploying',
            fail: 'deploy failed',
            abort: 'deploy failed',
            delete: 'deleting',
          },
        },
        'deploy failed': {
          meta: meta('failed', 'active'),
          on: { rebuild: 'deploying', deploy: 'deploying', delete: 'deleting' },
        },
        'deploy hold': {
          meta: meta('hold', 'active'),
          on: { unhold: 'wait call-back', abort: 'deploy failed' },
        },
        cleaning: {
          meta: meta('active', 'available'),
          on: {
            done: 'available',
            fail: 'clean failed',
            wait: 'clean wait',
            hold: 'clean hold',
            manage: 'manageable',
          },
        },
        'clean wait': {
          meta: meta('wait', 'available'),
          on: { fail: 'clean failed', abort: 'clean failed', hold: 'clean hold', resume: 'cleaning' },
        },
        'clean failed': { meta: meta('failed', 'available'), on: { manage: 'manageable' } },
        'clean hold': {
          meta: meta('hold', 'available'),
          on: { abort: 'clean failed', unhold: 'clean wait' },
        },
        deleting: { meta: meta('active', 'available'), on: { fail: 'error', clean: 'cleaning' } },
        inspecting: {
          meta: meta('active', 'manageable'),
          on: { done: 'manageable', fail: 'inspect failed', wait: 'inspect wait' },
        },
        'inspect failed': {
          meta: meta('failed', 'manageable'),
          on: { manage: 'manageable', inspect: 'inspecting' },
        },
        'inspect wait': {
          meta: meta('wait', 'manageable'),
          on: {
            done: 'manageable',
            fail: 'inspect failed',
            abort: 'inspect failed',
            resume: 'inspecting',
          },
        },
        adopting: { meta: meta('active', 'active'), on: { done: 'active', fail: 'adopt failed' } },
        'adopt failed': {
          meta: meta('failed', 'active'),
          on: { adopt: 'adopting', manage: 'manageable' },
        },
        rescuing: {
          meta: meta('active', 'rescue'),
          on: { done: 'rescue', wait: 'rescue wait', fail: 'rescue failed' },
        },
        'rescue wait': {
          meta: meta('wait', 'rescue'),
          on: {
            resume: 'rescuing',
            fail: 'rescue failed',
            abort: 'rescue failed',
            delete: 'deleting',
          },
        },
        'rescue failed': {
          meta: meta('failed', 'rescue'),
          on: { rescue: 'rescuing', unrescue: 'unrescuing', delete: 'deleting' },
        },
        unrescuing: {
          meta: meta('active', 'active'),
          on: { done: 'active', fail: 'unrescue failed' },
        },
        'unrescue failed': {
          meta: meta('failed', 'active'),
          on: { rescue: 'rescuing', unrescue: 'unrescuing', delete: 'deleting' },
        },
        servicing: {
          meta: meta('active', 'active'),
          on: {
            done: 'active',
            fail: 'service failed',
            wait: 'service wait',
            hold: 'service hold',
          },
        },
        'service wait': {
          meta: meta('wait', 'active'),
          on: {
            hold: 'service hold',
            resume: 'servicing',
            fail: 'service failed',
            abort: 'service failed',
            delete: 'deleting',
          },
        },
        'service failed': {
          meta: meta('failed', 'active'),
          on: {
            service: 'servicing',
            rescue: 'rescuing',
            wait: 'service wait',
            hold: 'service hold',
            delete: 'deleting',
            abort: 'active',
          },
        },
        'service hold': {
          meta: meta('hold', 'active'),
          on: {
            service: 'servicing',
            unhold: 'service wait',
            fail: 'service failed',
            abort: 'service failed',
          },
        },
      },
    },
    power: {
      initial: 'unknown',
      // On the region, so that the recorded power state is taken from any power state.
      on: { 'power.on': '.power on', 'power.off': '.power off' },
      states: { unknown: {}, 'power on': {}, 'power off': {} },
    },
    maintenance: {
      initial: 'off',
      on: { 'maintenance.set': '.on', 'maintenance.unset': '.off' },
      states: { off: {}, on: {} },
    },
  },
});
