/**
 * Replay: fold a node's stream through the machine, event by event, with no effects (nothing
 * is dispatched, scheduled or published). Serves history-at-revision and `ironclad replay`.
 */
import { evolveNode, initialNodeState, type NodeState } from '../../domain/node/state.js';
import { redactDeep } from '../../domain/secrets.js';
import type { EventStore, StoredEvent } from '../../ports/event-store.js';
import { streamName } from '../../runtime/actor-runtime.js';
import { entityOf } from '../projector.js';

export interface ReplayStep {
  event: StoredEvent;
  state: NodeState;
}

/** Yields each event of the node's stream (up to `until`, inclusive) with the state right after it. */
export async function* replayNode(store: EventStore, id: string, until?: number): AsyncGenerator<ReplayStep> {
  const stream = streamName('node', id);
  let state = initialNodeState(id);
  let from = 0;
  for (;;) {
    const batch = await store.readStream(stream, { fromRevision: from, toRevision: until, limit: 1000 });
    for (const e of batch) {
      state = evolveNode(state, e);
      yield { event: e, state };
    }
    if (batch.length < 1000) return;
    from = batch[batch.length - 1]!.revision + 1;
  }
}

/** The public event envelope (api.md "Event envelope"), secrets redacted. */
export function eventEnvelope(e: StoredEvent) {
  const entity = entityOf(e.stream);
  const m = e.metadata as Record<string, unknown>;
  const str = (k: string): string | null => (typeof m[k] === 'string' ? (m[k] as string) : null);
  return {
    id: e.id, type: e.type, entity_type: entity.type, entity_id: entity.id, revision: e.revision, position: e.position,
    time: e.time, data: redactDeep(e.data) as Record<string, unknown>,
    metadata: {
      task_id: str('task_id'), principal: str('principal'), request_id: str('request_id'),
      correlation_id: str('correlation_id'), causation_id: str('causation_id'),
    },
  };
}
