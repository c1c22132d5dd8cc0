/**
 * A decision in progress: events are emitted one at a time and folded at once, so every
 * follow-up rule (finish the task, start the next queued one) sees the state they produce.
 */
import type { NodeEvent, NodeEventMap, NodeEventType } from '../../../machines/node/node.events.js';
import type { DecideContext, DecideResult } from './commands.js';
import { evolveNode, type NodeState } from './state.js';

export class Working {
  readonly events: NodeEvent[] = [];
  state: NodeState;
  readonly ctx: DecideContext;
  readonly result: DecideResult = { task_id: null, coalesced: false, ignored: false };
  private readonly time: string;

  constructor(state: NodeState, ctx: DecideContext) {
    this.state = state;
    this.ctx = ctx;
    this.time = new Date(ctx.now).toISOString();
  }

  emit<K extends NodeEventType>(type: K, data: NodeEventMap[K]): void {
    const e = { type, data } as NodeEvent;
    this.events.push(e);
    this.state = evolveNode(this.state, {
      type, data: data as Record<string, unknown>, time: this.time, revision: this.state.revision + 1, position: null,
    });
  }

  /** ISO time `seconds` from now. */
  deadline(seconds: number): string {
    return new Date(this.ctx.now + seconds * 1000).toISOString();
  }
}
