/**
 * A decision in progress, shared by every actor kind: events are emitted one at a time and
 * folded at once, so every follow-up rule sees the state they produce, and the decider's
 * resulting state is exactly the fold of its events.
 */

/** A stored event as a fold needs it. */
export interface FoldInput {
  type: string;
  data: Record<string, unknown>;
  time: string;
  revision: number;
  position: string | null;
}

export type EventOf<M> = { [K in keyof M]: { type: K; data: M[K] } }[keyof M];

export class Decision<S extends { revision: number }, M extends object, C extends { now: number }, R> {
  readonly events: EventOf<M>[] = [];
  state: S;
  readonly ctx: C;
  readonly result: R;
  private readonly time: string;
  private readonly evolve: (state: S, event: FoldInput) => S;

  constructor(state: S, ctx: C, result: R, evolve: (state: S, event: FoldInput) => S) {
    this.state = state;
    this.ctx = ctx;
    this.result = result;
    this.evolve = evolve;
    this.time = new Date(ctx.now).toISOString();
  }

  emit<K extends keyof M & string>(type: K, data: M[K]): void {
    this.events.push({ type, data } as EventOf<M>);
    this.state = this.evolve(this.state, {
      type, data: data as Record<string, unknown>, time: this.time, revision: this.state.revision + 1, position: null,
    });
  }

  /** ISO time `seconds` from now. */
  deadline(seconds: number): string {
    return new Date(this.ctx.now + seconds * 1000).toISOString();
  }
}
