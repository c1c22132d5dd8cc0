/** A node decision in progress (see src/domain/decision.ts). */
import type { NodeEventMap } from '../../../machines/node/node.events.js';
import { Decision } from '../decision.js';
import type { DecideContext, DecideResult } from './commands.js';
import { evolveNode, type NodeState } from './state.js';

export class Working extends Decision<NodeState, NodeEventMap, DecideContext, DecideResult> {
  constructor(state: NodeState, ctx: DecideContext) {
    super(state, ctx, { task_id: null, coalesced: false, ignored: false }, evolveNode);
  }
}
