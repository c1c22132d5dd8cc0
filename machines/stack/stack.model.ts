/**
 * Everything the rest of the system needs to know about stack statuses, derived from
 * `stackMachine` itself (its state nodes, their `meta` and their transitions), like
 * node.model.ts for nodes: change the machine and every answer below follows.
 */
import { transition, type SnapshotFrom } from 'xstate';
import { IroncladError } from '../../src/domain/errors.js';
import {
  STACK_EVENTS,
  stackMachine,
  type StackAction,
  type StackMachineEventType,
  type StackStatusMeta,
  type StatusPhase,
} from './stack.machine.js';

type StackSnapshot = SnapshotFrom<typeof stackMachine>;
/** A stack status, e.g. `'UPDATE_IN_PROGRESS'`. */
export type StackStatus = StackSnapshot['value'];

/** One status as the machine defines it. */
export interface StackStatusInfo {
  readonly name: StackStatus;
  readonly stable: boolean;
  readonly action: StackAction | null;
  readonly phase: StatusPhase;
}

/** One edge of the stack machine. */
export interface StackTransition {
  readonly from: StackStatus;
  readonly event: StackMachineEventType;
  readonly to: StackStatus;
}

const statusNodes = Object.values(stackMachine.root.states);

function metaOf(key: string, value: StackStatusMeta | undefined): StackStatusMeta {
  if (value === undefined) throw new Error(`stack status "${key}" has no meta`);
  return value;
}

/** The statuses, in definition order (13). */
export const STACK_STATUSES: readonly StackStatusInfo[] = Object.freeze(
  statusNodes.map((node) => {
    const { stable, action, phase } = metaOf(node.key, node.meta);
    return Object.freeze({ name: node.key as StackStatus, stable, action, phase });
  }),
);

const EVENT_SET: ReadonlySet<string> = new Set(STACK_EVENTS);

/** True when `name` is one of the stack machine's events. */
export function isStackEvent(name: string): name is StackMachineEventType {
  return EVENT_SET.has(name);
}

/** The transitions, in definition order. */
export const STACK_TRANSITIONS: readonly StackTransition[] = Object.freeze(
  statusNodes.flatMap((node) =>
    [...node.transitions.values()].flat().map((t) => {
      const to = t.target?.[0]?.key;
      if (!isStackEvent(t.eventType) || to === undefined || t.target?.length !== 1) {
        throw new Error(`stack status "${node.key}": bad transition on "${t.eventType}"`);
      }
      return Object.freeze({ from: node.key as StackStatus, event: t.eventType, to: to as StackStatus });
    }),
  ),
);

/**
 * API verbs on a stack → the machine event each fires. `cancel_update` ends the running
 * create/update (`cancel`); with `rollback_on_failure` the decider follows it with `rollback`.
 */
export const STACK_API_VERBS = {
  create: 'create',
  update: 'update',
  delete: 'delete',
  cancel_update: 'cancel',
  rollback: 'rollback',
} as const satisfies Record<string, StackMachineEventType>;
export type StackApiVerb = keyof typeof STACK_API_VERBS;

/** The actions of `POST /v1/stacks/{id}/actions`. */
export const STACK_ACTION_VERBS = ['cancel_update', 'rollback'] as const satisfies readonly StackApiVerb[];

const VERB_NAMES = Object.keys(STACK_API_VERBS) as StackApiVerb[];

/** True when `s` is a stack verb of the API. */
export function isStackApiVerb(s: string): s is StackApiVerb {
  return Object.hasOwn(STACK_API_VERBS, s);
}

const STATUS_BY_NAME: ReadonlyMap<string, StackStatusInfo> = new Map(STACK_STATUSES.map((s) => [s.name, s]));

/** True when `name` is one of the 13 stack statuses. */
export function isStackStatus(name: string): name is StackStatus {
  return STATUS_BY_NAME.has(name);
}

/**
 * The STACK_STATUSES entry for `name`.
 * @throws IroncladError `internal` for an unknown status: stored statuses always come from the machine.
 */
export function stackStatusInfo(name: string): StackStatusInfo {
  const info = STATUS_BY_NAME.get(name);
  if (info === undefined) throw new IroncladError('internal', `Unknown stack status "${name}".`);
  return info;
}

/** `<ACTION>_IN_PROGRESS` for an action. */
export const inProgressStatus = (action: StackAction): StackStatus => `${action}_IN_PROGRESS` as StackStatus;

// Keyed by `status + '\0' + event`; at most 13 × 8 entries since unknown names never get in.
const nextCache = new Map<string, StackStatus | null>();

/**
 * The status `event` leads to from `status`, or null when `status` does not accept it (asked of
 * xstate itself, `can()` first since `transition()` silently ignores refused events). Memoised.
 * @throws IroncladError `internal` for an unknown status.
 */
export function nextStackStatus(status: string, event: string): StackStatus | null {
  const key = status + '\u0000' + event;
  const cached = nextCache.get(key);
  if (cached !== undefined) return cached;
  const { name } = stackStatusInfo(status);
  if (!isStackEvent(event)) return null;
  const snapshot = stackMachine.resolveState({ value: name });
  const next = snapshot.can({ type: event }) ? transition(stackMachine, snapshot, { type: event })[0].value : null;
  nextCache.set(key, next);
  return next;
}

/** Every API verb the machine accepts in `status`, sorted (busy rules are the caller's). */
export function allowedStackActions(status: string): StackApiVerb[] {
  return VERB_NAMES.filter((verb) => nextStackStatus(status, STACK_API_VERBS[verb]) !== null).sort();
}

/** The body of `GET /v1/machines/stack`. */
export interface StackMachineDescription {
  readonly states: readonly { readonly name: StackStatus; readonly stable: boolean }[];
  readonly transitions: readonly StackTransition[];
  readonly api_verbs: Readonly<Record<StackApiVerb, StackMachineEventType>>;
}

const DESCRIPTION: StackMachineDescription = Object.freeze({
  states: Object.freeze(STACK_STATUSES.map(({ name, stable }) => Object.freeze({ name, stable }))),
  transitions: STACK_TRANSITIONS,
  api_verbs: Object.freeze({ ...STACK_API_VERBS }),
});

/** The stack machine as data (states, transitions, API verbs); the same frozen object every call. */
export function machineDescription(): StackMachineDescription {
  return DESCRIPTION;
}
