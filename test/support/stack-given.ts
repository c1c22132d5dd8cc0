/**
 * Given/when/then for the stack decider (style.md habit 6), like given.ts for nodes:
 *
 *   givenStack(history).when(command).then(['TaskCreated', 'TraversalStarted', ...]);
 *   givenStack(history).when(command).thenThrows('invalid_state', { current_state: 'DELETE_COMPLETE' });
 *
 * `givenStack` folds recorded events through `evolveStack` (revisions 0, 1, 2... at one fixed
 * time); `when` decides with a fixed `now` and sequential ids `gen-1`, `gen-2`... Pure.
 */
import { expect } from 'vitest';
import type { StackEvent, StackEventType } from '../../machines/stack/stack.events.js';
import type { StackCommand, StackDecideContext } from '../../src/domain/stack/commands.js';
import { decideStack, type StackDecision } from '../../src/domain/stack/decide.js';
import { evolveStack, initialStackState, type StackState } from '../../src/domain/stack/state.js';
import { IroncladError, type ErrorCode } from '../../src/domain/errors.js';
import { STACK_ID, T0 } from './stack-sim.js';

export const STACK_EVENT_TIME = new Date(T0).toISOString();
/** The decision's `now`: one minute after the given events. */
export const STACK_NOW = T0 + 60_000;

export type ExpectedStackEvent = StackEventType | { type: StackEventType; data?: Record<string, unknown> };

/** Folds events as they would be stored: revision 0, 1, 2... at `time`. */
export function foldStack(events: readonly StackEvent[], start: StackState = initialStackState(STACK_ID), time = STACK_EVENT_TIME): StackState {
  let state = start;
  for (const e of events) {
    state = evolveStack(state, { type: e.type, data: e.data as Record<string, unknown>, time, revision: state.revision + 1, position: null });
  }
  return state;
}

export function stackContext(now = STACK_NOW): StackDecideContext {
  let n = 0;
  return { now, newId: () => `gen-${++n}`, principal: 'test', idempotency_key: null, config: { defaultTimeoutS: 3600 } };
}

export function givenStack(events: readonly StackEvent[], now = STACK_NOW) {
  const state = foldStack(events);
  return {
    state,
    when(command: StackCommand) {
      const run = (): StackDecision => decideStack(command, state, stackContext(now));
      return {
        decide: run,
        then(expected: readonly ExpectedStackEvent[]): StackDecision {
          const d = run();
          const want = expected.map((e) => (typeof e === 'string' ? { type: e } : e));
          expect(d.events.map((e) => e.type), 'event types').toEqual(want.map((e) => e.type));
          expect(d.events).toMatchObject(want);
          // The decider's state must be exactly the fold of what it emitted (the log is the truth).
          expect(d.state).toEqual(foldStack(d.events, state, new Date(now).toISOString()));
          return d;
        },
        thenThrows(code: ErrorCode, extensions?: Record<string, unknown>): IroncladError {
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
        thenIgnored(): StackDecision {
          const d = run();
          expect(d.events).toEqual([]);
          expect(d.result.ignored).toBe(true);
          return d;
        },
      };
    },
  };
}
