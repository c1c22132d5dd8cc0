/**
 * The EventStore contract: every adapter (memory, SQLite, KurrentDB) runs this same suite.
 * Decisions it pins down (documented in src/adapters/shared/append-rules.ts):
 * - an empty batch is a no-op without an expected-revision check; it returns the current revision
 *   (-1 and position '0' for a missing stream);
 * - a batch whose ids are all stored in that stream is an idempotent retry: the original result,
 *   whatever `expected` says; an id stored in another stream, a partly stored batch or an id
 *   repeated within a batch is a plain Error (not a ConcurrencyError: retrying cannot help).
 */
import { describe, expect, it } from 'vitest';
import { ConcurrencyError } from '../../src/domain/errors.js';
import { comparePositions, type ReadStreamOptions, type StoredEvent } from '../../src/ports/event-store.js';
import { newEvent, newEvents, useEventStore, type EventStoreContractOptions, type EventStoreFactory } from './event-store.context.js';
import { subscribeAllContract } from './event-store.subscribe.contract.js';

export type { EventStoreContractOptions, EventStoreFactory } from './event-store.context.js';

const expectIncreasing = (events: StoredEvent[]): void => {
  for (let i = 1; i < events.length; i++) expect(comparePositions(events[i - 1].position, events[i].position)).toBe(-1);
};

async function expectConflict(attempt: Promise<unknown>, actual: number | null): Promise<void> {
  const error = await attempt.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ConcurrencyError);
  expect((error as ConcurrencyError).actual).toBe(actual);
}

/** Registers the whole EventStore contract against `factory` (a fresh store per test). */
export function eventStoreContract(name: string, factory: EventStoreFactory, options: EventStoreContractOptions = {}): void {
  describe(`EventStore contract: ${name}`, () => {
    const ctx = useEventStore(factory, options);
    const store = () => ctx.store();
    const { sharedLog, rejectsIdsFromOtherStreams, dedupsRetryAtCurrentRevision } = ctx.options;

    describe('an empty store or stream', () => {
      it('reads an unknown stream as empty with no revision', async () => {
        const s = ctx.stream('unknown');
        expect(await store().readStream(s)).toEqual([]);
        expect(await store().readStream(s, { fromRevision: 2, toRevision: 5, limit: 1 })).toEqual([]);
        expect(await store().streamRevision(s)).toBeNull();
      });

      it.skipIf(sharedLog)('has no head and an empty global log', async () => {
        expect(await store().headPosition()).toBeNull();
        expect(await store().readAll()).toEqual([]);
        expect(await store().readAll({ limit: 10 })).toEqual([]);
      });
    });

    describe('append and read', () => {
      it('stores a batch atomically with consecutive revisions and increasing positions', async () => {
        const s = ctx.stream('node');
        const batch = [newEvent('Registered', { name: 'n1', tags: ['a', 'b'], spec: { cpus: 8, ratio: 0.5 } }, { by: 'test' }), newEvent('Enrolled', { ok: true, note: 'ünïcödé ✓' })];
        const result = await store().append(s, batch, 'no_stream', '2026-01-02T03:04:05.000Z');
        expect(result.revision).toBe(1);
        expect(result.events.map((e) => [e.id, e.stream, e.revision, e.type, e.time])).toEqual([
          [batch[0].id, s, 0, 'Registered', '2026-01-02T03:04:05.000Z'],
          [batch[1].id, s, 1, 'Enrolled', '2026-01-02T03:04:05.000Z'],
        ]);
        expect(result.position).toBe(result.events[1].position);
        for (const e of result.events) expect(e.position).toMatch(/^\d+$/);
        expectIncreasing(result.events);
        expect(await store().readStream(s)).toEqual(result.events);
        expect(await store().streamRevision(s)).toBe(1);
      });

      it('round-trips data and metadata exactly', async () => {
        const s = ctx.stream('data');
        const data = { nested: { deep: [1, 'two', { three: null }] }, n: -1.25, empty: {}, list: [] };
        const metadata = { correlation_id: 'c-1', causation: { id: 'x' } };
        await store().append(s, [newEvent('T', data, metadata)], 'no_stream');
        const [read] = await store().readStream(s);
        expect(read.data).toEqual(data);
        expect(read.metadata).toEqual(metadata);
      });

      it('records the current time when none is given', async () => {
        const before = Date.now();
        const s = ctx.stream('time');
        const { events } = await store().append(s, [newEvent()], 'no_stream');
        const [read] = await store().readStream(s);
        expect(read.time).toBe(events[0].time);
        expect(new Date(read.time).toISOString()).toBe(read.time);
        expect(Date.parse(read.time)).toBeGreaterThanOrEqual(before - 1_000);
        expect(Date.parse(read.time)).toBeLessThanOrEqual(Date.now() + 1_000);
      });

      it('orders positions numerically, not as text (9 < 10)', async () => {
        const s = ctx.stream('many');
        for (const e of newEvents(12)) await store().append(s, [e], 'any');
        const read = await store().readStream(s);
        expect(read.map((e) => e.revision)).toEqual([...Array(12).keys()]);
        expectIncreasing(read);
        const head = await store().headPosition();
        expect(head).not.toBeNull();
        expect(comparePositions(head as string, read[11].position)).toBeGreaterThanOrEqual(0);
        if (!sharedLog) expect(head).toBe(read[11].position);
      });

      it('treats an empty batch as a no-op returning the current revision, without checking expected', async () => {
        const missing = ctx.stream('empty-missing');
        expect(await store().append(missing, [], 'any')).toEqual({ revision: -1, position: '0', events: [] });
        expect(await store().streamRevision(missing)).toBeNull();
        const s = ctx.stream('empty');
        const first = await store().append(s, newEvents(2), 'no_stream');
        expect(await store().append(s, [], 7)).toEqual({ revision: 1, position: first.position, events: [] });
        expect(await store().readStream(s)).toHaveLength(2);
      });
    });

    describe('expected revision', () => {
      it('appends with no_stream, a matching revision, and any', async () => {
        const s = ctx.stream('expected');
        await store().append(s, [newEvent()], 'no_stream');
        expect((await store().append(s, [newEvent()], 0)).revision).toBe(1);
        expect((await store().append(s, [newEvent()], 'any')).revision).toBe(2);
        expect((await store().append(ctx.stream('any-new'), [newEvent()], 'any')).revision).toBe(0);
      });

      it('rejects no_stream on an existing stream with a typed ConcurrencyError carrying actual', async () => {
        const s = ctx.stream('exists');
        await store().append(s, newEvents(2), 'no_stream');
        await expectConflict(store().append(s, [newEvent()], 'no_stream'), 1);
        const error = await store().append(s, [newEvent()], 'no_stream').catch((e: unknown) => e);
        expect(error).toMatchObject({ name: 'ConcurrencyError', stream: s, expected: 'no_stream', actual: 1 });
      });

      it('rejects a wrong revision, and a revision on a missing stream (actual null)', async () => {
        const s = ctx.stream('wrong');
        await store().append(s, newEvents(3), 'no_stream');
        await expectConflict(store().append(s, [newEvent()], 1), 2);
        await expectConflict(store().append(s, [newEvent()], 5), 2);
        await expectConflict(store().append(ctx.stream('missing'), [newEvent()], 0), null);
        expect(await store().readStream(s)).toHaveLength(3);
      });

      it('lets exactly one of several racing appends with the same expected revision win', async () => {
        const s = ctx.stream('race');
        await store().append(s, [newEvent()], 'no_stream');
        const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => store().append(s, [newEvent()], 0)));
        expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
        for (const o of outcomes.filter((o) => o.status === 'rejected')) expect((o as PromiseRejectedResult).reason).toBeInstanceOf(ConcurrencyError);
        expect(await store().readStream(s)).toHaveLength(2);
      });

      it('lets exactly one of several racing no_stream appends create the stream', async () => {
        const s = ctx.stream('race-create');
        const outcomes = await Promise.allSettled(Array.from({ length: 4 }, () => store().append(s, newEvents(2), 'no_stream')));
        expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
        expect(await store().readStream(s)).toHaveLength(2);
      });
    });

    describe('event id dedup', () => {
      it('answers a retried batch with the original result and stores nothing again', async () => {
        const s = ctx.stream('retry');
        const batch = newEvents(2);
        const original = await store().append(s, batch, 'no_stream', '2026-01-01T00:00:00.000Z');
        expect(await store().append(s, batch, 'no_stream')).toEqual(original);
        expect(await store().readStream(s)).toEqual(original.events);
      });

      it('recognises a retry whatever expected says, after later appends too', async () => {
        const s = ctx.stream('retry-later');
        const batch = newEvents(2);
        const original = await store().append(s, batch, 'no_stream');
        await store().append(s, [newEvent()], 1);
        for (const expected of ['no_stream', 'any', 0, 1, 9] as const) {
          expect(await store().append(s, batch, expected)).toEqual(original);
        }
        expect(await store().streamRevision(s)).toBe(2);
      });

      it.runIf(dedupsRetryAtCurrentRevision)('recognises a retry even when expected equals the current revision', async () => {
        const s = ctx.stream('retry-current');
        const batch = newEvents(2);
        const original = await store().append(s, batch, 'no_stream');
        expect(await store().append(s, batch, 1)).toEqual(original);
        await store().append(s, [newEvent()], 1);
        expect(await store().append(s, batch, 2)).toEqual(original);
        expect(await store().streamRevision(s)).toBe(2);
      });

      it.runIf(rejectsIdsFromOtherStreams)('rejects an id already stored in another stream with a clear Error', async () => {
        const e = newEvent();
        const s1 = ctx.stream('first');
        await store().append(s1, [e], 'no_stream');
        const error = await store().append(ctx.stream('second'), [e], 'any').catch((x: unknown) => x);
        expect(error).toBeInstanceOf(Error);
        expect(error).not.toBeInstanceOf(ConcurrencyError);
        expect((error as Error).message).toMatch(/already stored in stream/);
        expect(await store().readStream(s1)).toHaveLength(1);
      });

      it('rejects a partly stored batch and a batch repeating an id, storing nothing', async () => {
        const s = ctx.stream('partial');
        const [a, b] = newEvents(2);
        await store().append(s, [a], 'no_stream');
        await expect(store().append(s, [a, b], 'any')).rejects.toThrow(/partly stored/);
        const c = newEvent();
        await expect(store().append(s, [c, c], 'any')).rejects.toThrow(/same event id twice/);
        expect((await store().readStream(s)).map((e) => e.id)).toEqual([a.id]);
      });
    });

    describe('readStream ranges', () => {
      it('honours fromRevision, inclusive toRevision and limit', async () => {
        const s = ctx.stream('range');
        await store().append(s, newEvents(10), 'no_stream');
        const revisions = async (o: ReadStreamOptions) => (await store().readStream(s, o)).map((e) => e.revision);
        expect(await revisions({ fromRevision: 3 })).toEqual([3, 4, 5, 6, 7, 8, 9]);
        expect(await revisions({ toRevision: 4 })).toEqual([0, 1, 2, 3, 4]);
        expect(await revisions({ fromRevision: 2, toRevision: 5 })).toEqual([2, 3, 4, 5]);
        expect(await revisions({ limit: 3 })).toEqual([0, 1, 2]);
        expect(await revisions({ fromRevision: 5, limit: 2 })).toEqual([5, 6]);
        expect(await revisions({ fromRevision: 1, toRevision: 8, limit: 3 })).toEqual([1, 2, 3]);
        expect(await revisions({ fromRevision: 8, toRevision: 20 })).toEqual([8, 9]);
        expect(await revisions({ fromRevision: 4, toRevision: 4 })).toEqual([4]);
        expect(await revisions({ fromRevision: 10 })).toEqual([]);
        expect(await revisions({ fromRevision: 5, toRevision: 4 })).toEqual([]);
        expect(await revisions({ limit: 0 })).toEqual([]);
      });
    });

    describe('readAll', () => {
      async function interleave() {
        const [a, b, c] = [ctx.stream('a'), ctx.stream('b'), ctx.stream('c')];
        const written: StoredEvent[] = [];
        written.push(...(await store().append(a, [newEvent()], 'no_stream')).events);
        written.push(...(await store().append(b, newEvents(3), 'no_stream')).events);
        written.push(...(await store().append(a, [newEvent()], 0)).events);
        written.push(...(await store().append(c, [newEvent()], 'any')).events);
        written.push(...(await store().append(b, [newEvent()], 2)).events);
        return written;
      }
      const all = async (after: string | null, limit?: number) => store().readAll({ after: after ?? undefined, limit });

      it('returns every stream in global (append) order', async () => {
        const written = await interleave();
        const read = await all(ctx.base());
        if (!sharedLog) expect(read).toHaveLength(written.length);
        expect(ctx.mine(read)).toEqual(written);
        expectIncreasing(read);
      });

      it('starts strictly after `after`', async () => {
        const written = await interleave();
        expect(ctx.mine(await all(written[2].position))).toEqual(written.slice(3));
        expect(ctx.mine(await all(written[0].position))).toEqual(written.slice(1));
        if (!sharedLog) expect(await all(written[written.length - 1].position)).toEqual([]);
      });

      it('returns at most `limit` events: a prefix of the unlimited read', async () => {
        const written = await interleave();
        const everything = await all(ctx.base());
        expect(await all(ctx.base(), 3)).toEqual(everything.slice(0, 3));
        expect(await all(written[1].position, 2)).toEqual((await all(written[1].position)).slice(0, 2));
        expect(await all(ctx.base(), 0)).toEqual([]);
        if (!sharedLog) expect(await all(ctx.base(), 100)).toEqual(written);
      });

      it('pages through the log with after + limit without gaps or duplicates', async () => {
        const written = await interleave();
        const paged: StoredEvent[] = [];
        let cursor = ctx.base();
        // Bounded, so a store that repeats events fails here instead of looping forever.
        for (let pages = 0; pages < 50 && ctx.mine(paged).length < written.length; pages++) {
          const page = await all(cursor, 2);
          if (page.length === 0) break;
          paged.push(...page);
          cursor = page[page.length - 1].position;
        }
        expect(ctx.mine(paged)).toEqual(written);
      });
    });

    describe('close', () => {
      it('can be called more than once', async () => {
        await store().close();
        await store().close();
      });
    });

    subscribeAllContract(ctx);
  });
}
