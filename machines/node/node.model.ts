/**
 * Everything the rest of the system needs to know about the node's provision states, derived
 * from `nodeMachine` itself (its state nodes, their `meta` and their transitions). There is no
 * second table here: change the machine and every answer below follows.
 */
import { transition, type SnapshotFrom } from 'xstate';
import { IroncladError } from '../../src/domain/errors.js';
import {
  nodeMachine,
  PROVISION_EVENTS,
  type ProvisionEvent,
  type ProvisionStateMeta,
  type StateKind,
} from './node.machine.js';

export { PROVISION_EVENTS, type ProvisionEvent };

type NodeSnapshot = SnapshotFrom<typeof nodeMachine>;
/** The name of a provision state, e.g. `'wait call-back'`. */
export type ProvisionStateName = NodeSnapshot['value']['provision'];

/** One provision state as the machine defines it. */
export interface ProvisionStateInfo {
  readonly name: ProvisionStateName;
  readonly stable: boolean;
  readonly kind: StateKind;
  readonly defaultTarget: string | null;
}

/** One edge of the provision machine. */
export interface ProvisionTransition {
  readonly from: ProvisionStateName;
  readonly event: ProvisionEvent;
  readonly to: ProvisionStateName;
}

const provisionNodes = Object.values(nodeMachine.root.states.provision.states);

/** Reads a state node's meta, refusing a definition that forgot it (caught at import time). */
function metaOf(key: string, value: ProvisionStateMeta | undefined): ProvisionStateMeta {
  if (value === undefined) throw new Error(`provision state "${key}" has no meta`);
  return value;
}

/** The provision states, in definition order (30). */
export const PROVISION_STATES: readonly ProvisionStateInfo[] = Object.freeze(
  provisionNodes.map((node) => {
    const { stable, kind, defaultTarget } = metaOf(node.key, node.meta);
    return Object.freeze({ name: node.key as ProvisionStateName, stable, kind, defaultTarget });
  }),
);

const PROVISION_EVENT_SET: ReadonlySet<string> = new Set(PROVISION_EVENTS);

/** True when `name` is one of the 18 provision events. */
export function isProvisionEvent(name: string): name is ProvisionEvent {
  return PROVISION_EVENT_SET.has(name);
}

type ProvisionNode = (typeof provisionNodes)[number];

/** A state node's outgoing edges; every provision edge has one event and one target. */
function edgesOf(node: ProvisionNode): ProvisionTransition[] {
  return [...node.transitions.values()].flat().map((t) => {
    const to = t.target?.[0]?.key;
    if (!isProvisionEvent(t.eventType) || to === undefined || t.target?.length !== 1) {
      throw new Error(`provision state "${node.key}": bad transition on "${t.eventType}"`);
    }
    return Object.freeze({
      from: node.key as ProvisionStateName,
      event: t.eventType,
      to: to as ProvisionStateName,
    });
  });
}

/** The provision transitions, in definition order (93). */
export const PROVISION_TRANSITIONS: readonly ProvisionTransition[] = Object.freeze(
  provisionNodes.flatMap(edgesOf),
);

/**
 * API verbs (`PUT /v1/nodes/{id}/states/provision {"target": verb}`) → the event each fires.
 * `active` is an alias of `deploy`; `undeploy` and `deleted` fire `delete`.
 */
export const API_VERBS = {
  manage: 'manage',
  provide: 'provide',
  inspect: 'inspect',
  clean: 'clean',
  adopt: 'adopt',
  rescue: 'rescue',
  unrescue: 'unrescue',
  abort: 'abort',
  unhold: 'unhold',
  service: 'service',
  rebuild: 'rebuild',
  deploy: 'deploy',
  active: 'deploy',
  undeploy: 'delete',
  deleted: 'delete',
} as const satisfies Record<string, ProvisionEvent>;
export type ApiVerb = keyof typeof API_VERBS;

const API_VERB_NAMES = Object.keys(API_VERBS) as ApiVerb[];

/** True when `s` is a provision verb the API accepts (unknown ones are `unknown_action`). */
export function isApiVerb(s: string): s is ApiVerb {
  return Object.hasOwn(API_VERBS, s);
}

/** Events that come from drivers, agents and timers, never from the API. */
export const INTERNAL_EVENTS = ['done', 'fail', 'wait', 'resume', 'hold'] as const satisfies readonly ProvisionEvent[];
export type InternalEvent = (typeof INTERNAL_EVENTS)[number];

/** Verbs refused (409 `in_maintenance`) while the node is in maintenance. */
export const MAINTENANCE_REFUSED_VERBS = [
  'deploy', 'active', 'rebuild', 'rescue', 'unrescue', 'service', 'clean',
] as const satisfies readonly ApiVerb[];

/** The driver operation a conductor runs while the node is in each `active`-kind state. */
export const DRIVER_OPERATION_FOR_STATE = {
  verifying: 'verify',
  deploying: 'deploy',
  cleaning: 'clean',
  deleting: 'teardown',
  inspecting: 'inspect',
  adopting: 'adopt',
  rescuing: 'rescue',
  unrescuing: 'unrescue',
  servicing: 'service',
} as const satisfies Partial<Record<ProvisionStateName, string>>;
export type NodeDriverOperation = (typeof DRIVER_OPERATION_FOR_STATE)[keyof typeof DRIVER_OPERATION_FOR_STATE];

const STATE_BY_NAME: ReadonlyMap<string, ProvisionStateInfo> = new Map(
  PROVISION_STATES.map((s) => [s.name, s]),
);
/** True when `name` is one of the 30 provision states. */
export function isProvisionState(name: string): name is ProvisionStateName {
  return STATE_BY_NAME.has(name);
}

/**
 * The PROVISION_STATES entry for `name`.
 * @throws IroncladError `internal` for an unknown state: stored states always come from the machine.
 */
export function stateInfo(name: string): ProvisionStateInfo {
  const info = STATE_BY_NAME.get(name);
  if (info === undefined) throw new IroncladError('internal', `Unknown provision state "${name}".`);
  return info;
}

const snapshotCache = new Map<string, NodeSnapshot>();

/** A machine snapshot with the given provision state (power and maintenance at their initials). */
function snapshotFor(state: ProvisionStateName): NodeSnapshot {
  let snapshot = snapshotCache.get(state);
  if (snapshot === undefined) {
    snapshot = nodeMachine.resolveState({
      value: { provision: state, power: 'unknown', maintenance: 'off' },
    });
    snapshotCache.set(state, snapshot);
  }
  return snapshot;
}

/** Asks xstate itself; `can()` first, because `transition()` silently ignores refused events. */
function computeNext(state: ProvisionStateName, event: ProvisionEvent): ProvisionStateName | null {
  const snapshot = snapshotFor(state);
  if (!snapshot.can({ type: event })) return null;
  const [next] = transition(nodeMachine, snapshot, { type: event });
  return next.value.provision;
}

// Keyed by `state + '\0' + event`; holds at most 30 × 18 entries since unknown names never get in.
const nextCache = new Map<string, ProvisionStateName | null>();

/**
 * The provision state `event` leads to from `state`, or null when `state` does not accept it
 * (an unknown event is never accepted). Memoised: O(1) after the first call per pair.
 * @throws IroncladError `internal` for an unknown state.
 */
export function nextProvisionState(state: string, event: string): ProvisionStateName | null {
  const key = state + '\u0000' + event;
  const cached = nextCache.get(key);
  if (cached !== undefined) return cached;
  const { name } = stateInfo(state);
  if (!isProvisionEvent(event)) return null;
  const next = computeNext(name, event);
  nextCache.set(key, next);
  return next;
}

/** The provision events `state` accepts, in PROVISION_EVENTS order. */
export function acceptedEvents(state: string): ProvisionEvent[] {
  return PROVISION_EVENTS.filter((event) => nextProvisionState(state, event) !== null);
}

const verbsCache = new Map<string, readonly ApiVerb[]>();

/**
 * Every API verb whose event `state` accepts, aliases included, sorted alphabetically. This is
 * the machine's raw answer: busy and maintenance rules are the caller's.
 * @throws IroncladError `internal` for an unknown state.
 */
export function allowedVerbs(state: string): ApiVerb[] {
  let verbs = verbsCache.get(state);
  if (verbs === undefined) {
    verbs = API_VERB_NAMES.filter((verb) => nextProvisionState(state, API_VERBS[verb]) !== null).sort();
    verbsCache.set(state, verbs);
  }
  return [...verbs];
}

/** The body of `GET /v1/machines/node`. */
export interface MachineDescription {
  readonly states: readonly { readonly name: ProvisionStateName; readonly stable: boolean }[];
  readonly transitions: readonly ProvisionTransition[];
  readonly api_verbs: Readonly<Record<ApiVerb, ProvisionEvent>>;
}

const DESCRIPTION: MachineDescription = Object.freeze({
  states: Object.freeze(PROVISION_STATES.map(({ name, stable }) => Object.freeze({ name, stable }))),
  transitions: PROVISION_TRANSITIONS,
  api_verbs: Object.freeze({ ...API_VERBS }),
});

/** The node machine as data (states, transitions, API verbs); the same frozen object every call. */
export function machineDescription(): MachineDescription {
  return DESCRIPTION;
}
