/**
 * Partition and leader leases (src/app/cluster/leases.ts) against a real nats-server: balance,
 * exclusivity (a partition is never served by two members at once), graceful hand-over at once,
 * take-over after a member stops renewing (TTL), self-fencing before the take-over.
 */
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { KV } from '@nats-io/kv';
import { connectNatsKv, type NatsKv } from '../../src/adapters/nats/kv.js';
import { createKvIdempotencyStore } from '../../src/adapters/nats/idempotency-store.js';
import { assign } from '../../src/app/cluster/assignment.js';
import { createLeaseManager, type LeaseManager } from '../../src/app/cluster/leases.js';
import { LEADER_ROLES } from '../../src/app/cluster/ownership.js';
import { partitionOf } from '../../src/ports/bus.js';
import { natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';
import { waitFor } from '../support/wait-for.js';

const P = 16;
/** An entity id whose partition is `p`. */
const entityIn = (p: number): string => {
  for (;;) {
    const id = randomUUID();
    if (partitionOf(id, P) === p) return id;
  }
};
const log = pino({ level: 'silent' });

describe('lease assignment (pure)', () => {
  it('gives every partition to exactly one member, balanced within one', () => {
    const a = assign({ members: ['m1', 'm2', 'm3'], partitionHolders: new Map(), roleHolders: new Map() }, P);
    const counts = ['m1', 'm2', 'm3'].map((m) => a.partitions.filter((x) => x === m).length);
    expect(counts.reduce((x, y) => x + y)).toBe(P);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  });

  it('moves only the excess when a member joins', () => {
    const two = assign({ members: ['m1', 'm2'], partitionHolders: new Map(), roleHolders: new Map() }, P);
    const holders = new Map(two.partitions.map((m, p) => [p, m] as const));
    const three = assign({ members: ['m1', 'm2', 'm3'], partitionHolders: holders, roleHolders: new Map() }, P);
    const moved = three.partitions.filter((m, p) => m !== two.partitions[p]);
    expect(moved.every((m) => m === 'm3')).toBe(true);
    expect(moved.length).toBe(5);
  });

  it('keeps a live role holder and replaces a dead one', () => {
    const roleHolders = new Map(LEADER_ROLES.map((r) => [r, 'm2'] as const));
    expect(Object.values(assign({ members: ['m1', 'm2'], partitionHolders: new Map(), roleHolders }, P).roles)).toEqual(LEADER_ROLES.map(() => 'm2'));
    expect(Object.values(assign({ members: ['m1', 'm3'], partitionHolders: new Map(), roleHolders }, P).roles).includes('m2')).toBe(false);
  });
});

if (natsServerOrSkip('cluster leases')) {
  describe('leases over NATS KV', () => {
    let server: NatsServer;
    let kvc: NatsKv;
    let members: LeaseManager[] = [];
    /** Partition → members announcing it as served right now (filled by the onChange listeners). */
    let serving: Map<number, Set<string>>;
    let violations: string[];

    beforeAll(async () => {
      server = await startNatsServer();
      kvc = await connectNatsKv({ servers: server.url, log });
    });
    afterAll(async () => {
      await kvc?.close();
      await server?.stop();
    });
    afterEach(async () => {
      await Promise.all(members.map((m) => m.stop()));
      members = [];
    });

    const bucket = (ttlMs: number): Promise<KV> => kvc.bucket(`leases_${randomUUID().slice(0, 8)}`, { description: 'test', ttlMs });
    const member = (kv: KV, ttlMs: number): LeaseManager => {
      const m = createLeaseManager({ kv, memberId: randomUUID(), name: 'test', partitions: P, ttlMs, log });
      m.onChange((acquired, lost) => {
        for (const p of lost) serving.get(p)?.delete(m.memberId);
        for (const p of acquired) {
          const s = serving.get(p) ?? new Set<string>();
          if (s.size > 0) violations.push(`partition ${p} acquired by ${m.memberId} while served by ${[...s].join(',')}`);
          s.add(m.memberId);
          serving.set(p, s);
        }
      });
      members.push(m);
      return m;
    };
    const balanced = (ms: LeaseManager[]): boolean => {
      const counts = ms.map((m) => m.owned().size);
      const all = new Set(ms.flatMap((m) => [...m.owned()]));
      return all.size === P && counts.reduce((a, b) => a + b) === P && Math.max(...counts) - Math.min(...counts) <= 1;
    };
    const leaders = (ms: LeaseManager[]) => LEADER_ROLES.map((r) => ms.filter((m) => m.isLeader(r)).length);

    afterEach(() => expect(violations).toEqual([]));
    const fresh = (): void => {
      serving = new Map();
      violations = [];
    };

    it('shared idempotency records: one owner per key across processes, replay, mismatch, release and take-over', async () => {
      fresh();
      const kv = await kvc.bucket(`idem_${randomUUID().slice(0, 8)}`, { description: 'test', ttlMs: 60_000 });
      let now = 1_000_000;
      const a = createKvIdempotencyStore(kv, { retentionMs: 50_000, abandonAfterMs: 10_000, now: () => now });
      const b = createKvIdempotencyStore(kv, { retentionMs: 50_000, abandonAfterMs: 10_000, now: () => now });
      const racing = await Promise.all([a.claim('t', 'k', 'fp'), b.claim('t', 'k', 'fp')]);
      expect(racing.map((r) => r.kind).sort()).toEqual(['claimed', 'in_flight']);
      expect(await b.claim('t', 'k', 'other')).toEqual({ kind: 'mismatch' });
      expect(await b.claim('u', 'k', 'fp')).toEqual({ kind: 'claimed' }); // keys are per tenant
      await a.complete('t', 'k', 'fp', { status: 202, headers: { location: '/v1/tasks/1' }, body: '{}' });
      expect(await b.claim('t', 'k', 'fp')).toEqual({ kind: 'replay', answer: { status: 202, headers: { location: '/v1/tasks/1' }, body: '{}' } });
      expect(await a.claim('t', 'k2', 'fp')).toEqual({ kind: 'claimed' });
      await a.release('t', 'k2');
      expect(await b.claim('t', 'k2', 'fp')).toEqual({ kind: 'claimed' });
      now += 11_000; // b died mid-request: its unanswered claim is abandoned
      expect(await a.claim('t', 'k2', 'fp')).toEqual({ kind: 'claimed' });
      now += 60_000; // past the retention: the key is free for a new request
      expect(await b.claim('t', 'k', 'other')).toEqual({ kind: 'claimed' });
    });

    it('an existing bucket takes the configured TTL (the fencing relies on it)', async () => {
      fresh();
      const name = `leases_${randomUUID().slice(0, 8)}`;
      await kvc.bucket(name, { description: 'test', ttlMs: 60_000 });
      const kv = await kvc.bucket(name, { description: 'test', ttlMs: 1_500 });
      expect((await kv.status()).ttl).toBe(1_500);
    });

    it('a single member holds every partition and leads every role once joined', async () => {
      fresh();
      const m = member(await bucket(5_000), 5_000);
      expect(m.joined()).toBe(false);
      await m.start();
      expect(m.joined()).toBe(true);
      expect(m.owned().size).toBe(P);
      expect(m.ownsEntity(randomUUID())).toBe(true);
      expect(LEADER_ROLES.every((r) => m.isLeader(r))).toBe(true);
    });

    it('three members share the partitions evenly, each held by exactly one, one leader per role', async () => {
      fresh();
      const kv = await bucket(5_000);
      const ms = [member(kv, 5_000), member(kv, 5_000), member(kv, 5_000)];
      for (const m of ms) await m.start();
      await waitFor(() => balanced(ms), { timeoutMs: 15_000, what: 'partitions balanced over 3 members' });
      expect(leaders(ms)).toEqual(LEADER_ROLES.map(() => 1));
      for (const m of ms) expect(m.status().members).toHaveLength(3);
      const id = randomUUID();
      expect(ms.filter((m) => m.ownsEntity(id))).toHaveLength(1);
    });

    it('a graceful stop hands its partitions over at once, long before the TTL', async () => {
      fresh();
      const ttl = 60_000; // a take-over by expiry could not happen within this test's wait
      const kv = await bucket(ttl);
      const [a, b] = [member(kv, ttl), member(kv, ttl)];
      await a.start();
      await b.start();
      await waitFor(() => balanced([a, b]), { timeoutMs: 15_000, what: 'balanced over 2 members' });
      await a.stop();
      expect(a.owned().size).toBe(0);
      expect(a.joined()).toBe(false);
      await waitFor(() => b.owned().size === P && LEADER_ROLES.every((r) => b.isLeader(r)), { timeoutMs: 10_000, what: 'the survivor holds everything' });
    });

    it('a member that stops renewing fences itself before the others take its partitions over (TTL)', async () => {
      fresh();
      const ttl = 1_500;
      const kv = await bucket(ttl);
      const [a, b, c] = [member(kv, ttl), member(kv, ttl), member(kv, ttl)];
      for (const m of [a, b, c]) await m.start();
      await waitFor(() => balanced([a, b, c]), { timeoutMs: 15_000, what: 'balanced over 3 members' });
      const orphaned = [...a.owned()];
      expect(orphaned.length).toBeGreaterThan(0);
      a.stopRenewing(); // a hung process: keeps running, never releases
      await waitFor(() => a.owned().size === 0, { timeoutMs: 10_000, what: 'the hung member fenced itself' });
      await waitFor(() => balanced([b, c]), { timeoutMs: 15_000, what: 'the partitions of the hung member taken over' });
      expect(LEADER_ROLES.every((r) => b.isLeader(r) !== c.isLeader(r))).toBe(true);
      expect(LEADER_ROLES.some((r) => a.isLeader(r))).toBe(false);
      // The onChange listeners recorded no moment at which two members served one partition (checked in afterEach).
    });

    it('a member whose lease was taken while it was away learns it on its next renewal', async () => {
      fresh();
      const ttl = 10_000;
      const kv = await bucket(ttl);
      const a = member(kv, ttl);
      await a.start();
      // Someone else writes partition 0's key (as if a's lease had expired and another member took it).
      await waitFor(async () => {
        const e = await kv.get('partitions.0');
        return kv.update('partitions.0', JSON.stringify({ member: 'intruder', name: 'x' }), e!.revision).then(() => true, () => false);
      }, { what: 'the intruder wrote partition 0' });
      await waitFor(() => !a.owned().has(0), { timeoutMs: 5_000, what: 'a noticed that partition 0 is not its own any more' });
      expect(a.ownsEntity(entityIn(0))).toBe(false);
      expect(a.owned().size).toBe(P - 1);
    });
  });
}
