/**
 * The SnapshotStore contract, run against every adapter. A snapshot is a throwaway cache keyed by
 * revision: newest revision wins, an older put is ignored, an equal one replaces.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SnapshotStore } from '../../src/ports/snapshot-store.js';

export type SnapshotStoreFactory = () => Promise<{ store: SnapshotStore; cleanup: () => Promise<void> }>;

/** Registers the SnapshotStore contract against `factory` (a fresh store per test). */
export function snapshotStoreContract(name: string, factory: SnapshotStoreFactory): void {
  describe(`SnapshotStore contract: ${name}`, () => {
    let current: Awaited<ReturnType<SnapshotStoreFactory>> | null = null;
    const store = (): SnapshotStore => {
      if (!current) throw new Error('no store: called outside a test');
      return current.store;
    };
    const stream = (): string => `snapshot-contract-${randomUUID()}`;
    beforeEach(async () => {
      current = await factory();
    });
    afterEach(async () => {
      await current?.cleanup();
      current = null;
    });

    it('has no snapshot for an unknown stream', async () => {
      expect(await store().get(stream())).toBeNull();
    });

    it('returns what was put, as a copy the caller may mutate', async () => {
      const s = stream();
      const state = { value: 'provisioned', tags: ['a'], nested: { n: 1.5, none: null } };
      await store().put(s, 4, state);
      const got = await store().get(s);
      expect(got).toEqual({ revision: 4, state });
      (got?.state as { tags: string[] }).tags.push('mutated');
      state.tags.push('mutated too');
      expect(await store().get(s)).toEqual({ revision: 4, state: { value: 'provisioned', tags: ['a'], nested: { n: 1.5, none: null } } });
    });

    it('keeps only the newest revision and ignores an older put', async () => {
      const s = stream();
      await store().put(s, 3, { at: 3 });
      await store().put(s, 7, { at: 7 });
      await store().put(s, 5, { at: 5 });
      expect(await store().get(s)).toEqual({ revision: 7, state: { at: 7 } });
    });

    it('replaces a snapshot of the same revision (the same events folded by newer code)', async () => {
      const s = stream();
      await store().put(s, 2, { v: 1 });
      await store().put(s, 2, { v: 2 });
      expect(await store().get(s)).toEqual({ revision: 2, state: { v: 2 } });
    });

    it('keeps streams apart', async () => {
      const [a, b] = [stream(), stream()];
      await store().put(a, 1, 'a');
      await store().put(b, 9, ['b']);
      expect(await store().get(a)).toEqual({ revision: 1, state: 'a' });
      expect(await store().get(b)).toEqual({ revision: 9, state: ['b'] });
    });

    it('deletes a snapshot, after which any revision may be put again', async () => {
      const s = stream();
      await store().put(s, 8, { x: 1 });
      await store().delete(s);
      expect(await store().get(s)).toBeNull();
      await store().put(s, 1, { x: 2 });
      expect(await store().get(s)).toEqual({ revision: 1, state: { x: 2 } });
      await store().delete(stream());
    });

    it('accepts revision 0 and primitive states', async () => {
      const s = stream();
      await store().put(s, 0, 0);
      expect(await store().get(s)).toEqual({ revision: 0, state: 0 });
      await store().put(s, 1, null);
      expect(await store().get(s)).toEqual({ revision: 1, state: null });
    });

    it('rejects a revision that is not a non-negative integer and a state JSON cannot hold', async () => {
      const s = stream();
      await expect(store().put(s, -1, {})).rejects.toThrow(TypeError);
      await expect(store().put(s, 1.5, {})).rejects.toThrow(TypeError);
      await expect(store().put(s, Number.NaN, {})).rejects.toThrow(TypeError);
      await expect(store().put(s, 1, undefined)).rejects.toThrow(TypeError);
      expect(await store().get(s)).toBeNull();
    });
  });
}
