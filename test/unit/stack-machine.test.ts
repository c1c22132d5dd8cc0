/**
 * The stack machine: statuses and transitions (docs/stacks.md), and everything derived from it
 * (allowed actions, the description served at GET /v1/machines/stack, the event mapping).
 */
import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import {
  allowedStackActions, isStackStatus, nextStackStatus, STACK_STATUSES, STACK_TRANSITIONS, stackMachine, stackMachineDescription,
  stackMachineEventOf, stackStatusInfo,
} from '../../machines/index.js';
import type { StackEvent } from '../../machines/stack/stack.events.js';

const ACTIONS = ['CREATE', 'UPDATE', 'DELETE', 'ROLLBACK'];
const PHASES = ['IN_PROGRESS', 'COMPLETE', 'FAILED'];

// The only hand-written copy of the transitions: the machine must match it exactly.
const TABLE: Record<string, Record<string, string>> = {
  INIT_COMPLETE: { create: 'CREATE_IN_PROGRESS' },
  CREATE_IN_PROGRESS: {
    complete: 'CREATE_COMPLETE', fail: 'CREATE_FAILED', cancel: 'CREATE_FAILED', timeout: 'CREATE_FAILED',
    update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS',
  },
  CREATE_COMPLETE: { update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS' },
  CREATE_FAILED: { update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS', rollback: 'ROLLBACK_IN_PROGRESS' },
  UPDATE_IN_PROGRESS: {
    complete: 'UPDATE_COMPLETE', fail: 'UPDATE_FAILED', cancel: 'UPDATE_FAILED', timeout: 'UPDATE_FAILED',
    update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS',
  },
  UPDATE_COMPLETE: { update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS' },
  UPDATE_FAILED: { update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS', rollback: 'ROLLBACK_IN_PROGRESS' },
  DELETE_IN_PROGRESS: { complete: 'DELETE_COMPLETE', fail: 'DELETE_FAILED', timeout: 'DELETE_FAILED' },
  DELETE_COMPLETE: {},
  DELETE_FAILED: { delete: 'DELETE_IN_PROGRESS' },
  ROLLBACK_IN_PROGRESS: {
    complete: 'ROLLBACK_COMPLETE', fail: 'ROLLBACK_FAILED', timeout: 'ROLLBACK_FAILED',
    update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS',
  },
  ROLLBACK_COMPLETE: { update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS' },
  ROLLBACK_FAILED: { update: 'UPDATE_IN_PROGRESS', delete: 'DELETE_IN_PROGRESS' },
};
const EVENTS = ['create', 'update', 'delete', 'rollback', 'complete', 'fail', 'cancel', 'timeout'];

describe('statuses', () => {
  it('are INIT_COMPLETE and every <ACTION>_<PHASE> of Heat', () => {
    const names = STACK_STATUSES.map((s) => s.name).sort();
    expect(names).toEqual(['INIT_COMPLETE', ...ACTIONS.flatMap((a) => PHASES.map((p) => `${a}_${p}`))].sort());
  });

  it('starts in INIT_COMPLETE', () => {
    expect(initialTransition(stackMachine)[0].value).toBe('INIT_COMPLETE');
  });

  it('are stable exactly when not IN_PROGRESS, and carry their action and phase', () => {
    for (const s of STACK_STATUSES) {
      expect(s.stable, s.name).toBe(!s.name.endsWith('_IN_PROGRESS'));
      if (s.name !== 'INIT_COMPLETE') expect(`${s.action}_${s.phase}`).toBe(s.name);
    }
    expect(stackStatusInfo('UPDATE_FAILED')).toEqual({ name: 'UPDATE_FAILED', stable: true, action: 'UPDATE', phase: 'FAILED' });
    expect(() => stackStatusInfo('SUSPEND_COMPLETE')).toThrow(/Unknown stack status/);
    expect(isStackStatus('SUSPEND_COMPLETE')).toBe(false);
  });
});

describe('transitions', () => {
  it.each(Object.entries(TABLE))('%s takes exactly its events', (status, on) => {
    for (const event of EVENTS) expect(nextStackStatus(status, event), `${status} --${event}-->`).toBe(on[event] ?? null);
  });

  it('agree with xstate itself', () => {
    for (const t of STACK_TRANSITIONS) {
      const [next] = transition(stackMachine, stackMachine.resolveState({ value: t.from }), { type: t.event });
      expect(next.value).toBe(t.to);
    }
    expect(STACK_TRANSITIONS).toHaveLength(Object.values(TABLE).reduce((n, on) => n + Object.keys(on).length, 0));
  });

  it('a newer request supersedes a running create or update (update and delete during create)', () => {
    expect(nextStackStatus('CREATE_IN_PROGRESS', 'update')).toBe('UPDATE_IN_PROGRESS');
    expect(nextStackStatus('UPDATE_IN_PROGRESS', 'update')).toBe('UPDATE_IN_PROGRESS');
    expect(nextStackStatus('CREATE_IN_PROGRESS', 'delete')).toBe('DELETE_IN_PROGRESS');
  });

  it('no rollback of a rollback and no cancel of it; nothing after DELETE_COMPLETE', () => {
    expect(nextStackStatus('ROLLBACK_IN_PROGRESS', 'rollback')).toBeNull();
    expect(nextStackStatus('ROLLBACK_FAILED', 'rollback')).toBeNull();
    expect(nextStackStatus('ROLLBACK_IN_PROGRESS', 'cancel')).toBeNull();
    for (const e of EVENTS) expect(nextStackStatus('DELETE_COMPLETE', e)).toBeNull();
  });

  it('refuses unknown events and throws on unknown statuses', () => {
    expect(nextStackStatus('CREATE_COMPLETE', 'suspend')).toBeNull();
    expect(() => nextStackStatus('NOPE', 'update')).toThrow();
  });
});

describe('allowed actions', () => {
  it.each([
    ['INIT_COMPLETE', ['create']],
    ['CREATE_IN_PROGRESS', ['cancel_update', 'delete', 'update']],
    ['UPDATE_IN_PROGRESS', ['cancel_update', 'delete', 'update']],
    ['CREATE_FAILED', ['delete', 'rollback', 'update']],
    ['UPDATE_COMPLETE', ['delete', 'update']],
    ['DELETE_IN_PROGRESS', []],
    ['DELETE_FAILED', ['delete']],
    ['DELETE_COMPLETE', []],
    ['ROLLBACK_IN_PROGRESS', ['delete', 'update']],
    ['ROLLBACK_FAILED', ['delete', 'update']],
  ])('%s allows %j', (status, verbs) => {
    expect(allowedStackActions(status)).toEqual(verbs);
  });
});

describe('description (GET /v1/machines/stack)', () => {
  it('is taken from the machine and is the same frozen object every call', () => {
    const d = stackMachineDescription();
    expect(d).toBe(stackMachineDescription());
    expect(Object.isFrozen(d)).toBe(true);
    expect(d.states).toHaveLength(13);
    expect(d.states.find((s) => s.name === 'UPDATE_IN_PROGRESS')).toEqual({ name: 'UPDATE_IN_PROGRESS', stable: false });
    expect(d.transitions).toBe(STACK_TRANSITIONS);
    expect(d.api_verbs).toEqual({ create: 'create', update: 'update', delete: 'delete', cancel_update: 'cancel', rollback: 'rollback' });
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
  });
});

describe('recorded events → machine events', () => {
  const ev = (type: string, data: Record<string, unknown>) => ({ type, data }) as unknown as StackEvent;

  it('maps traversal starts to their action, completions and the three failure causes', () => {
    expect(stackMachineEventOf(ev('TraversalStarted', { action: 'CREATE' }))).toBe('create');
    expect(stackMachineEventOf(ev('TraversalStarted', { action: 'ROLLBACK' }))).toBe('rollback');
    expect(stackMachineEventOf(ev('TraversalCompleted', {}))).toBe('complete');
    expect(stackMachineEventOf(ev('TraversalFailed', { cause: 'resource' }))).toBe('fail');
    expect(stackMachineEventOf(ev('TraversalFailed', { cause: 'timeout' }))).toBe('timeout');
    expect(stackMachineEventOf(ev('TraversalFailed', { cause: 'cancel' }))).toBe('cancel');
    expect(stackMachineEventOf(ev('ResourceActionCompleted', {}))).toBeNull();
  });
});
