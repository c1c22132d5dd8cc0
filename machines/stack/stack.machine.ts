/**
 * The stack machine: the stack's status as Heat shows it, `<ACTION>_<STATUS>` for the actions
 * CREATE, UPDATE, DELETE and ROLLBACK (docs/stacks.md), plus `INIT_COMPLETE` before the create.
 *
 * This is the one definition; `allowed_actions`, `GET /v1/machines/stack` and the decider's
 * refusals are derived from it (stack.model.ts). It is pure: no guards, no actions, no context.
 * Convergence itself (traversals, graph, resource records) is data beside it, folded by
 * src/domain/stack/state.ts; the machine only says which status a recorded fact leads to.
 *
 * Every request is "converge to template T" and starts a new traversal, so the request events
 * (`create`, `update`, `delete`, `rollback`) are taken from IN_PROGRESS states too: a newer
 * traversal supersedes the running one (update during create/update, delete during create).
 */
import { setup } from 'xstate';

/** The stack actions, in Heat's spelling. */
export const STACK_ACTIONS = ['CREATE', 'UPDATE', 'DELETE', 'ROLLBACK'] as const;
export type StackAction = (typeof STACK_ACTIONS)[number];

/** Events of the stack machine: four requests, then how a traversal ends. */
export const STACK_EVENTS = ['create', 'update', 'delete', 'rollback', 'complete', 'fail', 'cancel', 'timeout'] as const;
export type StackMachineEventType = (typeof STACK_EVENTS)[number];
export type StackMachineEvent = { type: StackMachineEventType };

/** The phase part of a status. */
export type StatusPhase = 'INIT' | 'IN_PROGRESS' | 'COMPLETE' | 'FAILED';

/** The `meta` of every status. */
export interface StackStatusMeta {
  /** Changes only on a request (everything but IN_PROGRESS). */
  stable: boolean;
  action: StackAction | null;
  phase: StatusPhase;
}

const inProgress = (action: StackAction): StackStatusMeta => ({ stable: false, action, phase: 'IN_PROGRESS' });
const settled = (action: StackAction, phase: 'COMPLETE' | 'FAILED'): StackStatusMeta => ({ stable: true, action, phase });

/** A request accepted from a settled (not deleted) stack. */
const requests = { update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS' } as const;

/** The stack machine (flat: one status at a time). */
export const stackMachine = setup({
  types: {
    events: {} as StackMachineEvent,
    meta: {} as StackStatusMeta,
  },
}).createMachine({
  id: 'stack',
  initial: 'INIT_COMPLETE',
  states: {
    INIT_COMPLETE: { meta: { stable: true, action: null, phase: 'INIT' }, on: { create: 'CREATE_IN_PROGRESS' } },
    CREATE_IN_PROGRESS: {
      meta: inProgress('CREATE'),
      on: {
        complete: 'CREATE_COMPLETE',
        fail: 'CREATE_FAILED',
        cancel: 'CREATE_FAILED',
        timeout: 'CREATE_FAILED',
        update: 'UPDATE_IN_PROGRESS',
        delete: 'DELETE_IN_PROGRESS',
      },
    },
    CREATE_COMPLETE: { meta: settled('CREATE', 'COMPLETE'), on: { ...requests } },
    CREATE_FAILED: { meta: settled('CREATE', 'FAILED'), on: { ...requests, rollback: 'ROLLBACK_IN_PROGRESS' } },
    UPDATE_IN_PROGRESS: {
      meta: inProgress('UPDATE'),
      on: {
        complete: 'UPDATE_COMPLETE',
        fail: 'UPDATE_FAILED',
        cancel: 'UPDATE_FAILED',
        timeout: 'UPDATE_FAILED',
        update: 'UPDATE_IN_PROGRESS',
        delete: 'DELETE_IN_PROGRESS',
      },
    },
    UPDATE_COMPLETE: { meta: settled('UPDATE', 'COMPLETE'), on: { ...requests } },
    UPDATE_FAILED: { meta: settled('UPDATE', 'FAILED'), on: { ...requests, rollback: 'ROLLBACK_IN_PROGRESS' } },
    DELETE_IN_PROGRESS: {
      meta: inProgress('DELETE'),
      // No update during delete: the resources are going away (Heat refuses it too).
      on: { complete: 'DELETE_COMPLETE', fail: 'DELETE_FAILED', timeout: 'DELETE_FAILED' },
    },
    // A deleted stack stays readable; nothing is accepted any more.
    DELETE_COMPLETE: { meta: settled('DELETE', 'COMPLETE') },
    DELETE_FAILED: { meta: settled('DELETE', 'FAILED'), on: { delete: 'DELETE_IN_PROGRESS' } },
    ROLLBACK_IN_PROGRESS: {
      meta: inProgress('ROLLBACK'),
      // No cancel: there is no rollback of a rollback. Fixing forward or deleting is allowed.
      on: { complete: 'ROLLBACK_COMPLETE', fail: 'ROLLBACK_FAILED', timeout: 'ROLLBACK_FAILED', ...requests },
    },
    ROLLBACK_COMPLETE: { meta: settled('ROLLBACK', 'COMPLETE'), on: { ...requests } },
    ROLLBACK_FAILED: { meta: settled('ROLLBACK', 'FAILED'), on: { ...requests } },
  },
});
