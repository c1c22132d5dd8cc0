/**
 * The actor runtime over the in-memory event and snapshot stores: one command at a time per
 * entity, optimistic concurrency with bounded retries, snapshots as a throwaway cache, and
 * bounded memory (idle eviction on the fake clock, LRU). No sleeping: time is the fake clock.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryEventStore } from '../../src/adapters/memory/event-store.js';
import { createMemorySnapshotStore } from '../../src/adapters/memory/snapshot-store.js';
import { ConcurrencyError, IroncladError } from '../../src/domain/errors.js';
import type { DecideResult, NodeCommand } from '../../src/domain/node/commands.js';
import { decideNode } from '../../src/domain/node/decide.js';
import { evolveNode, initialNodeState, type NodeState } from '../../src/domain/node/state.js';
import type { Clock } from '../../src/ports/clock.js';
import type { EventStore, NewEvent, StoredEvent } from '../../src/ports/event-store.js';
import type { SnapshotStore } from '../../src/ports/snapshot-store.js';
import {
  createActorRuntime, streamName, type ActorRuntime, type ActorRuntimeOptions, type Decision, type EntityModel, type PendingEvent,
} from '../../src/runtime/actor-runtime.js';
import { createFakeClock, createSequentialIds, type FakeClock } from '../support/fake-clock.js';
import { cmd, decideContext, done, waitOutcome } from '../support/given.js';

/** A tiny entity: a running total of the `n` of its `Added` events. */
interface Tally {
  id: string;
  total: number;
  count: number;
}
const tallyModel: EntityModel<Tally> = {
  entityType: 'node',
  initial: (id) => ({ id, total: 0, count: 0 }),
  evolve: (s, e) => ({ ...s, total: s.total + Number(e.data['n'] ?? 0), count: s.count + 1 }),
  snapshotVersion: 1,
};
const added = (n: number, extra: Record<string, unknown> = {}): PendingEvent => ({ type: 'Added', data: { n, ...extra } });
/** A decider adding `n`; its value is the revision it decided against. */
const add = (n: number) => (_s: Tally, revision: number): Decision<Tally, number> => ({ events: [added(n)], value: revision });
const nothing = (s: Tally): Decision<Tally, number> => ({ events: [], value: s.total });

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Wraps a store to observe reads and to run something before each append. */
function observed(inner: EventStore, beforeAppend?: (stream: string, events: NewEvent[]) => Promise<void> | void) {
  const reads: { stream: string; from: number }[] = [];
  const store: EventStore = {
    ...inner,
    async append(stream, events, expected, time) {
      await beforeAppend?.(stream, events);
      return inner.append(stream, events, expected, time);
    },
    async readStream(stream, o = {}) {
      reads.push({ stream, from: o.fromRevision ?? 0 });
      return inner.readStream(stream, o);
    },
  };
  return { store, reads };
}

/** A clock whose time moves by hand but that never fires timers (to call evictIdle directly). */
function timerlessClock(base: FakeClock): Clock {
  return { now: () => base.now(), setTimeout: () => () => undefined };
}

let open: ActorRuntime<unknown>[] = [];
afterEach(() => {
  for (const r of open) r.close();
  open = [];
});

function setup<S = Tally>(o: Partial<ActorRuntimeOptions<S>> & { store?: EventStore; snapshots?: SnapshotStore } = {}) {
  const clock = createFakeClock();
  const store = o.store ?? createMemoryEventStore();
  const snapshots = o.snapshots ?? createMemorySnapshotStore();
  const runtime = createActorRuntime<S>({
    clock, ids: createSequentialIds('evt'), model: tallyModel as unknown as EntityModel<S>, ...o, store, snapshots,
  });
  open.push(runtime as ActorRuntime<unknown>);
  return { runtime, store, snapshots, clock: (o.clock ?? clock) as FakeClock };
}

async function fullFold(store: EventStore, id: string): Promise<Tally> {
  const events = await store.readStream(streamName('node', id));
  return events.reduce(tallyModel.evolve, tallyModel.initial(id));
}

describe('mailbox: one command at a time per entity', () => {
  it('never interleaves concurrent commands for one entity and keeps their order', async () => {
    const log: string[] = [];
    const { store } = observed(createMemoryEventStore(), async (_s, events) => {
      log.push(`append ${String(events[0]!.data['n'])}`);
      await tick(); // the append takes a while: a second decide must not start meanwhile
      await tick();
    });
    const { runtime } = setup({ store });
    const decide = (n: number) => (s: Tally, revision: number): Decision<Tally, number> => {
      log.push(`decide ${n}`);
      return add(n)(s, revision);
    };
    const seen = await Promise.all([0, 1, 2, 3, 4].map((n) => runtime.execute('a', decide(n), {}).then((r) => r.value)));
    expect(seen).toEqual([-1, 0, 1, 2, 3]); // each decided against the previous one's result: no conflict, no retry
    expect(log).toEqual([0, 1, 2, 3, 4].flatMap((n) => [`decide ${n}`, `append ${n}`]));
    const stored = await store.readStream(streamName('node', 'a'));
    expect(stored.map((e) => e.data['n'])).toEqual([0, 1, 2, 3, 4]);
  });

  it('does not hold one entity up behind another', async () => {
    const gate = deferred();
    const { store } = observed(createMemoryEventStore(), async (stream) => {
      if (stream === streamName('node', 'slow')) await gate.promise;
    });
    const { runtime } = setup({ store });
    let slowDone = false;
    const slow = runtime.execute('slow', add(1), {}).then(() => (slowDone = true));
    await runtime.execute('fast', add(2), {});
    expect(slowDone).toBe(false);
    gate.resolve();
    await slow;
    expect(slowDone).toBe(true);
  });

  it('runs the commands queued behind a failed one', async () => {
    const { runtime } = setup();
    const boom = new Error('decider bug');
    const first = runtime.execute('a', () => {
      throw boom;
    }, {});
    const second = runtime.execute('a', add(5), {});
    await expect(first).rejects.toBe(boom);
    await expect(second).resolves.toMatchObject({ value: -1, state: { total: 5 } });
  });
});

describe('optimistic concurrency', () => {
  /** Before the runtime's append, another writer appends `Added 100` (once, or every time). */
  function interloper(always: boolean) {
    const inner = createMemoryEventStore();
    let armed = false;
    let n = 0;
    const { store } = observed(inner, async (stream) => {
      if (!armed) return;
      if (!always) armed = false;
      await inner.append(stream, [{ id: `ext-${++n}`, type: 'Added', data: { n: 100 }, metadata: {} }], 'any');
    });
    return { store, arm: () => (armed = true) };
  }

  it('reloads and decides again when another writer appended between load and append', async () => {
    const { store, arm } = interloper(false);
    const { runtime } = setup({ store });
    await runtime.execute('a', add(1), {});
    arm();
    const calls: { revision: number; total: number }[] = [];
    const res = await runtime.execute('a', (s, revision) => {
      calls.push({ revision, total: s.total });
      return add(10)(s, revision);
    }, {});
    expect(calls).toEqual([{ revision: 0, total: 1 }, { revision: 1, total: 101 }]);
    expect(res.state).toEqual({ id: 'a', total: 111, count: 3 });
    expect(res.state).toEqual(await fullFold(store, 'a'));
  });

  it('gives up after maxRetries with overloaded, caused by the ConcurrencyError', async () => {
    const { store, arm } = interloper(true);
    const { runtime } = setup({ store, maxRetries: 3 });
    await runtime.execute('a', add(1), {});
    arm();
    let decisions = 0;
    const err = await runtime.execute('a', (s, r) => {
      decisions++;
      return add(10)(s, r);
    }, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IroncladError);
    expect((err as IroncladError).code).toBe('overloaded');
    expect((err as IroncladError).cause).toBeInstanceOf(ConcurrencyError);
    expect(decisions).toBe(3);
    expect((await fullFold(store, 'a')).total).toBe(1 + 3 * 100); // none of our 10s got in
  });

  it('does not retry errors other than a conflict', async () => {
    const { store } = observed(createMemoryEventStore(), () => {
      throw new Error('disk full');
    });
    const { runtime } = setup({ store });
    let decisions = 0;
    await expect(runtime.execute('a', (s, r) => {
      decisions++;
      return add(1)(s, r);
    }, {})).rejects.toThrow('disk full');
    expect(decisions).toBe(1);
  });
});

describe('decisions', () => {
  it('appends nothing when the decider throws', async () => {
    const { runtime, store } = setup();
    await runtime.execute('a', add(1), {});
    const head = await store.headPosition();
    await expect(runtime.execute('a', () => {
      throw new IroncladError('invalid_state', 'no');
    }, {})).rejects.toMatchObject({ code: 'invalid_state' });
    expect(await store.headPosition()).toBe(head);
    expect((await runtime.load('a')).state.total).toBe(1);
  });

  it('appends nothing for a decision without events, and says so', async () => {
    const { runtime, store } = setup();
    await runtime.execute('a', add(3), {});
    const head = await store.headPosition();
    const res = await runtime.execute('a', nothing, {});
    expect(res).toEqual({ value: 3, state: { id: 'a', total: 3, count: 1 }, appended: [], position: null });
    expect(await store.headPosition()).toBe(head);
  });

  it('stores the caller metadata on every event, with the task id of each event', async () => {
    const { runtime } = setup();
    const res = await runtime.execute('a', () => ({ events: [added(1, { task_id: 't-1' }), added(2)], value: null }), { principal: 'p', request_id: 'r' });
    expect(res.appended.map((e) => e.metadata)).toEqual([
      { principal: 'p', request_id: 'r', task_id: 't-1' },
      { principal: 'p', request_id: 'r', task_id: null },
    ]);
    expect(res.position).toBe(res.appended[1]!.position);
  });

  it('keeps the state it answers equal to the fold of the stream, without re-reading it', async () => {
    const { store, reads } = observed(createMemoryEventStore());
    const { runtime } = setup({ store });
    let last: Tally | null = null;
    for (const n of [1, 2, 3]) last = (await runtime.execute('a', add(n), {})).state;
    expect(reads.filter((r) => r.stream === streamName('node', 'a'))).toHaveLength(1); // the first load only
    expect(last).toEqual(await fullFold(store, 'a'));
  });
});

describe('snapshots', () => {
  async function build(n: number, snapshotEvery: number) {
    const store = createMemoryEventStore();
    const snapshots = createMemorySnapshotStore();
    const { runtime } = setup({ store, snapshots, snapshotEvery });
    const taken: (number | null)[] = [];
    for (let i = 1; i <= n; i++) {
      await runtime.execute('a', add(i), {});
      taken.push((await snapshots.get(streamName('node', 'a')))?.revision ?? null);
    }
    return { store, snapshots, taken };
  }

  it('writes a snapshot every N events', async () => {
    const { snapshots, taken } = await build(7, 3);
    expect(taken).toEqual([null, null, 2, 2, 2, 5, 5]);
    expect(await snapshots.get(streamName('node', 'a'))).toEqual({ revision: 5, state: { v: 1, s: { id: 'a', total: 21, count: 6 } } });
  });

  it('loads from the snapshot plus the tail, to the same state as a full fold', async () => {
    const { store: inner, snapshots } = await build(7, 3);
    const { store, reads } = observed(inner);
    const { runtime } = setup({ store, snapshots });
    const loaded = await runtime.load('a');
    expect(reads).toEqual([{ stream: streamName('node', 'a'), from: 6 }]);
    expect(loaded).toEqual({ state: await fullFold(inner, 'a'), revision: 6 });
  });

  it('ignores a snapshot written by another version of the fold', async () => {
    const { store: inner, snapshots } = await build(7, 3);
    await snapshots.put(streamName('node', 'a'), 6, { v: 2, s: { id: 'a', total: -1, count: -1 } });
    const { store, reads } = observed(inner);
    const { runtime } = setup({ store, snapshots });
    const loaded = await runtime.load('a');
    expect(reads[0]).toEqual({ stream: streamName('node', 'a'), from: 0 });
    expect(loaded.state).toEqual(await fullFold(inner, 'a'));
  });

  it('rebuilds a node from snapshot + tail exactly as its full fold through the machine', async () => {
    const store = createMemoryEventStore();
    const snapshots = createMemorySnapshotStore();
    const model: EntityModel<NodeState> = { entityType: 'node', initial: initialNodeState, evolve: evolveNode, snapshotVersion: 1 };
    const { runtime, clock } = setup<NodeState>({ store, snapshots, model, snapshotEvery: 5 });
    const send = async (command: (s: NodeState) => NodeCommand): Promise<NodeState> => {
      const ctx = { ...decideContext({ now: clock.now() }), newId: createSequentialIds(`g${clock.now()}`).next };
      const res = await runtime.execute<DecideResult>('n1', (s) => {
        const d = decideNode(command(s), s, ctx);
        return { events: d.events as PendingEvent[], value: d.result, state: d.state };
      }, {});
      clock.advance(1000);
      return res.state;
    };
    const step = (outcome = done) => (s: NodeState): NodeCommand => ({ type: 'ReportStepOutcome', op_id: s.op!.op_id, step_id: s.op!.step_id!, outcome });
    await send(() => cmd.enroll());
    await send(() => cmd.provision('manage', { task_id: 't1' }));
    await send(step());
    await send(() => cmd.provision('provide', { task_id: 't2' }));
    await send(step());
    await send(() => cmd.provision('deploy', { task_id: 't3' }));
    await send(step(waitOutcome));
    await send(() => cmd.heartbeat('resume'));
    const last = await send(step());
    expect(last.provision_state).toBe('active');

    const events = await store.readStream(streamName('node', 'n1'));
    const full = events.reduce((s: NodeState, e: StoredEvent) => evolveNode(s, e), initialNodeState('n1'));
    const snap = await snapshots.get(streamName('node', 'n1'));
    expect(snap!.revision).toBeGreaterThan(0);
    expect(snap!.revision).toBeLessThan(full.revision);
    const fresh = setup<NodeState>({ store, snapshots, model });
    expect((await fresh.runtime.load('n1')).state).toEqual(full);
    expect(last).toEqual(full);
  });
});

describe('memory bounds', () => {
  it('evicts an actor idle for idleMs through its periodic sweep', async () => {
    const { runtime, clock } = setup({ idleMs: 60_000 });
    await runtime.load('a');
    clock.advance(45_000);
    expect(runtime.cachedCount()).toBe(1);
    clock.advance(15_000);
    expect(runtime.cachedCount()).toBe(0);
  });

  it('keeps an actor that was used within idleMs', async () => {
    const { runtime, clock } = setup({ idleMs: 60_000 });
    await runtime.load('a');
    clock.advance(45_000);
    await runtime.execute('a', add(1), {});
    await tick(); // let the mailbox settle: an actor with a command in flight is never evicted
    clock.advance(45_000);
    expect(runtime.cachedCount()).toBe(1);
    clock.advance(15_000);
    expect(runtime.cachedCount()).toBe(0);
  });

  it('evictIdle drops only the actors idle for idleMs and says how many', async () => {
    const base = createFakeClock();
    const { runtime } = setup({ idleMs: 60_000, clock: timerlessClock(base) });
    await runtime.load('a');
    await runtime.load('b');
    base.advance(30_000);
    await runtime.load('c');
    base.advance(30_000);
    expect(runtime.evictIdle()).toBe(2);
    expect(runtime.cachedCount()).toBe(1);
    expect(runtime.evictIdle()).toBe(0);
  });

  it('never evicts an actor with a command in flight', async () => {
    const base = createFakeClock();
    const gate = deferred();
    const { store } = observed(createMemoryEventStore(), () => gate.promise);
    const { runtime } = setup({ store, idleMs: 1000, clock: timerlessClock(base) });
    const running = runtime.execute('a', add(1), {});
    await tick();
    base.advance(10_000);
    expect(runtime.evictIdle()).toBe(0);
    gate.resolve();
    await running;
  });

  it('stops its sweep timer on close', () => {
    const { runtime, clock } = setup();
    expect(clock.pending()).toBe(1);
    runtime.close();
    expect(clock.pending()).toBe(0);
  });

  it('keeps at most maxCached actors, dropping the least recently used', async () => {
    const { store, reads } = observed(createMemoryEventStore());
    const { runtime } = setup({ store, maxCached: 2 });
    await runtime.execute('a', add(1), {});
    await runtime.execute('b', add(2), {});
    await runtime.load('a'); // a is now more recent than b
    await runtime.load('c');
    expect(runtime.cachedCount()).toBe(2);
    reads.length = 0;
    await runtime.load('a');
    expect(reads).toEqual([]); // still cached
    expect((await runtime.load('b')).state.total).toBe(2); // evicted, rebuilt from the log
    expect(reads.map((r) => r.stream)).toEqual([streamName('node', 'b')]);
  });
});
