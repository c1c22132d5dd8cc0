/**
 * A stack decision in progress (see src/domain/decision.ts): follow-up rules (start what became
 * ready, complete the traversal) see the state the emitted events produce.
 */
import type { StackEventMap } from '../../../machines/stack/stack.events.js';
import { Decision } from '../decision.js';
import type { StackDecideContext, StackDecideResult } from './commands.js';
import { evolveStack, type StackState } from './state.js';

export class StackWorking extends Decision<StackState, StackEventMap, StackDecideContext, StackDecideResult> {
  constructor(state: StackState, ctx: StackDecideContext) {
    super(state, ctx, { task_id: null, coalesced: false, ignored: false }, evolveStack);
  }
}
