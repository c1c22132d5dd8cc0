/**
 * The subscribeAll part of the EventStore contract (registered by eventStoreContract).
 * Adapters report handler failures through console.error by default; runners must not override
 * that, because the failure test below watches it.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { comparePositions, type EventStore, type StoredEvent, type Subscription } from '../../src/ports/event-store.js';
import { waitFor } from '../support/wait-for.js';
import { newEvent, newEvents, type ContractContext } from './event-store.context.js';

interface Collector {
  /** Events of this test's streams, in delivery order. */
  received: StoredEvent[];
  /** Every batch handed over (all streams). */
  batches: StoredEvent[][];
  sub: Subscription;
}

function collect(
  store: EventStore,
  ctx: ContractContext,
  after: string | null,
  before?: (batch: StoredEvent[], call: number) => Promise<void> | void,
): Collector {
  const c: Omit<Collector, 'sub'> = { received: [], batches: [] };
  let calls = 0;
  const sub = store.subscribeAll(after, async (batch) => {
    await before?.(batch, ++calls);
    c.batches.push(batch);
    c.received.push(...ctx.mine(batch));
  });
  return Object.assign(c, { sub });
}

/** All delivered positions strictly increase across batches, and no batch is empty. */
function expectOrderedBatches(c: Collector): void {
  const all = c.batches.flat();
  for (const b of c.batches) expect(b.length).toBeGreaterThan(0);
  for (let i = 1; i < all.length; i++) expect(comparePositions(all[i - 1].position, all[i].position)).toBe(-1);
}

export function subscribeAllContract(ctx: ContractContext): void {
  const store = () => ctx.store();
  const waitCount = (c: Collector, n: number, what: string) =>
    waitFor(() => c.received.length >= n, { timeoutMs: ctx.options.timeoutMs, what: `${what}: ${n} events (got ${c.received.length})` });
  const open: Subscription[] = [];
  const track = (c: Collector): Collector => (open.push(c.sub), c);
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  describe('subscribeAll', () => {
    it('catches up, then delivers live appends, in global order', async () => {
      const [a, b] = [ctx.stream('sub-a'), ctx.stream('sub-b')];
      const written = [...(await store().append(a, newEvents(2), 'no_stream')).events, ...(await store().append(b, [newEvent()], 'no_stream')).events];
      const c = track(collect(store(), ctx, ctx.base()));
      await waitCount(c, 3, 'catch-up');
      written.push(...(await store().append(a, [newEvent()], 1)).events);
      written.push(...(await store().append(b, newEvents(2), 0)).events);
      await waitCount(c, 6, 'live');
      expect(c.received).toEqual(written);
      expectOrderedBatches(c);
    });

    it('resumes strictly after a given position with no gap and no duplicate', async () => {
      const s = ctx.stream('resume');
      const written: StoredEvent[] = [];
      for (const e of newEvents(6)) written.push(...(await store().append(s, [e], 'any')).events);
      const c = track(collect(store(), ctx, written[2].position));
      await waitCount(c, 3, 'resume');
      written.push(...(await store().append(s, [newEvent()], 5)).events);
      await waitCount(c, 4, 'live after resume');
      expect(c.received).toEqual(written.slice(3));
    });

    it('hands over every event exactly once while appends race the catch-up', async () => {
      const streams = [ctx.stream('race-a'), ctx.stream('race-b')];
      const written: StoredEvent[] = [];
      for (let i = 0; i < 30; i++) written.push(...(await store().append(streams[i % 2], [newEvent()], 'any')).events);
      const c = track(collect(store(), ctx, ctx.base()));
      for (let i = 0; i < 30; i++) written.push(...(await store().append(streams[i % 2], newEvents(1 + (i % 3)), 'any')).events);
      await waitCount(c, written.length, 'catch-up racing live appends');
      expect(c.received.map((e) => e.id)).toEqual(written.map((e) => e.id));
      expect(c.received).toEqual(written);
      expectOrderedBatches(c);
    });

    it('waits for the handler before handing over the next batch (no overlapping calls)', async () => {
      const s = ctx.stream('backpressure');
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let inFlight = 0;
      let maxInFlight = 0;
      let calls = 0;
      let blocked = false;
      const c = track(
        collect(store(), ctx, ctx.base(), async (batch, call) => {
          calls = call;
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          if (ctx.mine(batch).length > 0 && !blocked) {
            blocked = true;
            await gate;
          }
          inFlight--;
        }),
      );
      const written = [...(await store().append(s, [newEvent()], 'no_stream')).events];
      await waitFor(() => blocked, { timeoutMs: ctx.options.timeoutMs, what: 'the handler blocked on the first event' });
      const callsWhileBlocked = calls;
      // A second subscriber sees the next appends: by then the blocked one had every chance to misbehave.
      const witness = track(collect(store(), ctx, ctx.base()));
      for (let r = 0; r < 4; r++) written.push(...(await store().append(s, [newEvent()], r)).events);
      await waitCount(witness, 5, 'witness while the first handler is blocked');
      expect(calls).toBe(callsWhileBlocked);
      release();
      await waitCount(c, written.length, 'after release');
      expect(maxInFlight).toBe(1);
      expect(c.received).toEqual(written);
    });

    it('logs a failing handler and retries the same batch until it succeeds', async () => {
      const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
      try {
        const s = ctx.stream('failing');
        const attempts = new Map<string, number>();
        const c = track(
          collect(store(), ctx, ctx.base(), (batch) => {
            // Batches may hold several events: fail whichever batch carries revision 1, twice.
            const target = ctx.mine(batch).find((e) => e.revision === 1);
            if (!target) return;
            const n = (attempts.get(target.id) ?? 0) + 1;
            attempts.set(target.id, n);
            if (n < 3) throw new Error(`handler failure ${n}`);
          }),
        );
        const written: StoredEvent[] = [];
        for (let r = 0; r < 4; r++) written.push(...(await store().append(s, [newEvent()], r === 0 ? 'no_stream' : r - 1)).events);
        await waitCount(c, 4, 'delivery after handler failures');
        expect(c.received).toEqual(written);
        expect(attempts.get(written[1].id)).toBe(3);
        expect(errors).toHaveBeenCalled();
        expectOrderedBatches(c);
      } finally {
        errors.mockRestore();
      }
    });

    it('stops delivering after close, even when closed from inside its handler', async () => {
      const s = ctx.stream('close');
      const closedOutside = collect(store(), ctx, ctx.base());
      let closedInside: Collector | null = null;
      closedInside = collect(store(), ctx, ctx.base(), async (batch) => {
        if (ctx.mine(batch).length > 0) await closedInside?.sub.close();
      });
      const witness = track(collect(store(), ctx, ctx.base()));
      await store().append(s, [newEvent()], 'no_stream');
      await waitFor(() => closedOutside.received.length === 1 && closedInside?.received.length === 1, ctx.options.timeoutMs);
      await closedOutside.sub.close();
      await closedOutside.sub.close();
      await store().append(s, newEvents(2), 0);
      await waitCount(witness, 3, 'witness');
      expect(closedOutside.received).toHaveLength(1);
      expect(closedInside.received).toHaveLength(1);
    });
  });
}
