/**
 * Replay of a stack: fold its stream through `evolveStack` (the stack machine decides every
 * status), event by event, with no effects. Serves `history/{revision}` and `ironclad replay stack`.
 */
import { evolveStack, initialStackState, type StackState } from '../../domain/stack/state.js';
import type { EventStore, StoredEvent } from '../../ports/event-store.js';
import { streamName } from '../../runtime/actor-runtime.js';

export interface StackReplayStep {
  event: StoredEvent;
  state: StackState;
}

/** Yields each event of the stack's stream (up to `until`, inclusive) with the state right after it. */
export async function* replayStack(store: EventStore, id: string, until?: number): AsyncGenerator<StackReplayStep> {
  const stream = streamName('stack', id);
  let state = initialStackState(id);
  let from = 0;
  for (;;) {
    const batch = await store.readStream(stream, { fromRevision: from, toRevision: until, limit: 1000 });
    for (const e of batch) {
      state = evolveStack(state, e);
      yield { event: e, state };
    }
    if (batch.length < 1000) return;
    from = batch[batch.length - 1]!.revision + 1;
  }
}
