/**
 * A stack decision in progress: events are emitted one at a time and folded at once, so every
 * follow-up rule (start what became ready, complete the traversal) sees the state they produce.
 * The decider's resulting state is therefore exactly the fold of its events.
 */
import type { StackEvent, StackEventMap, StackEventType } from '../../../machines/stack/stack.events.js';
import type { StackDecideContext, StackDecideResult } from './commands.js';
import { evolveStack, type StackState } from './state.js';

export class StackWorking {
  readonly events: StackEvent[] = [];
  state: StackState;
  readonly ctx: StackDecideContext;
  readonly result: StackDecideResult = { task_id: null, coalesced: false, ignored: false };
  private readonly time: string;

  constructor(state: StackState, ctx: StackDecideContext) {
    this.state = state;
    this.ctx = ctx;
    this.time = new Date(ctx.now).toISOString();
  }

  emit<K extends StackEventType>(type: K, data: StackEventMap[K]): void {
    this.events.push({ type, data } as StackEvent);
    this.state = evolveStack(this.state, {
      type, data: data as Record<string, unknown>, time: this.time, revision: this.state.revision + 1, position: null,
    });
  }

  /** ISO time `seconds` from now. */
  deadline(seconds: number): string {
    return new Date(this.ctx.now + seconds * 1000).toISOString();
  }
}
