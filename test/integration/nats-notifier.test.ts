/**
 * The notifier end to end: an Ironclad (test/support/harness.ts) with NATS_URL pointing at a real
 * nats-server publishes every stored event to IRONCLAD_EVENTS; a subscriber through the JetStream
 * adapter checks what arrived against the event store. Each test gets fresh streams.
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryEventStore } from '../../src/adapters/memory/event-store.js';
import { createNatsBus } from '../../src/adapters/nats/bus.js';
import { eventEnvelope } from '../../src/app/nodes/replay.js';
import { createNotifier, type Notifier } from '../../src/app/notifications/notifier.js';
import type { Ownership } from '../../src/app/cluster/ownership.js';
import { eventSubject, type Bus, type Notification } from '../../src/ports/bus.js';
import type { EventStore, StoredEvent } from '../../src/ports/event-store.js';
import { envelope } from '../contract/bus.contract.js';
import { createHarness, type Harness } from '../support/harness.js';
import { deleteIroncladStreams, natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';
import { waitFor } from '../support/wait-for.js';

const WAIT = { timeoutMs: 15_000 };

if (natsServerOrSkip('notifier over NATS')) {
  describe('notifications over NATS JetStream', () => {
    let server: NatsServer;
    let h: Harness | null = null;
    const readers: Bus[] = [];

    beforeAll(async () => {
      server = await startNatsServer();
    });
    afterAll(async () => {
      await server?.stop();
    });
    afterEach(async () => {
      await Promise.all(readers.splice(0).map((r) => r.close()));
      await h?.close();
      h = null;
      await deleteIroncladStreams(server.url);
    });

    const reader = async (): Promise<Bus> => {
      const r = await createNatsBus({ servers: server.url, log: pino({ level: 'silent' }), setup: false });
      readers.push(r);
      return r;
    };
    /** Subscribes from `fromSequence` and collects; `stopAfter` closes the subscription from inside the handler. */
    const subscribe = async (bus: Bus, fromSequence: number, stopAfter = Infinity) => {
      const got: Notification[] = [];
      const sub = await bus.subscribeEvents({ fromSequence }, async (n) => {
        got.push(n);
        if (got.length === stopAfter) await sub.close();
      });
      return { got, sub };
    };
    /** One in-memory log shared by successive or concurrent Ironclads (closing one leaves it open). */
    const sharedStore = (): EventStore => ({ ...createMemoryEventStore(), close: async () => undefined });
    const notifier = (): Notifier => h!.ic.internals['notifier'] as Notifier;
    const published = async (): Promise<StoredEvent[]> => {
      const all = await h!.store.readAll();
      await waitFor(() => notifier().position() === all[all.length - 1]!.position, { ...WAIT, what: 'the notifier reached the head of the log' });
      return all;
    };
    /** Two nodes (one with a BMC password) through manage and provide. */
    const driveTwoNodes = async (): Promise<string[]> => {
      const ids = [await h!.enroll({ name: 'n-a', driver_info: { ipmi_address: '10.0.0.1', ipmi_password: 'hunter2' } }), await h!.enroll({ name: 'n-b' })];
      for (const id of ids) {
        expect((await h!.provision(id, 'manage')).statusCode).toBe(202);
        await h!.driveUntil(id, 'manageable');
        expect((await h!.provision(id, 'provide')).statusCode).toBe(202);
        await h!.driveUntil(id, 'available');
      }
      return ids;
    };
    const expectExactlyTheLog = (got: Notification[], stored: StoredEvent[]): void => {
      expect(got.map((n) => n.msgId)).toEqual(stored.map((e) => e.id));
      expect(new Set(got.map((n) => n.sequence)).size).toBe(got.length);
    };

    it('publishes every stored event once, in log order, with Nats-Msg-Id = event id and secrets redacted', async () => {
      h = await createHarness({ NATS_URL: server.url }, { persistent: true });
      const ids = await driveTwoNodes();
      const stored = await published();
      const { got } = await subscribe(await reader(), 1);
      await waitFor(() => got.length >= stored.length, WAIT);
      expectExactlyTheLog(got, stored);
      for (const [i, n] of got.entries()) {
        expect(n.envelope).toEqual(JSON.parse(JSON.stringify(eventEnvelope(stored[i]!))));
        expect(n.subject).toBe(eventSubject('default', n.envelope));
      }
      for (const id of ids) {
        const revisions = got.filter((n) => n.envelope.entity_id === id).map((n) => n.envelope.revision);
        expect(revisions).toEqual(revisions.map((_, i) => i));
      }
      expect(JSON.stringify(got)).not.toContain('hunter2');
      expect(await (await reader()).lastEventSequence()).toBe(stored.length);
    });

    it('lets a subscriber stop and restart from a sequence without missing anything', async () => {
      h = await createHarness({ NATS_URL: server.url }, { persistent: true });
      await driveTwoNodes();
      const stored = await published();
      const first = await subscribe(await reader(), 1, 7);
      await waitFor(() => first.sub.lastSequence() === first.got[6]?.sequence, WAIT);
      const second = await subscribe(await reader(), first.sub.lastSequence() + 1);
      await waitFor(() => second.got.length >= stored.length - 7, WAIT);
      expectExactlyTheLog([...first.got, ...second.got], stored);
    });

    it('resumes after a restart without gaps or duplicates, even when the checkpoint lost its last writes', async () => {
      h = await createHarness({ NATS_URL: server.url }, { persistent: true });
      const id = await h.enroll({ name: 'n-restart' });
      expect((await h.provision(id, 'manage')).statusCode).toBe(202);
      await h.driveUntil(id, 'manageable');
      const before = await published();
      // The publisher goes down; the API keeps appending events nobody publishes.
      await notifier().stop();
      expect((await h.provision(id, 'provide')).statusCode).toBe(202);
      await h.driveUntil(id, 'available');
      // As after a crash between a confirmed publish and its checkpoint write: the checkpoint is behind the stream.
      const db = new Database(join(h.ic.config.IRONCLAD_DATA_DIR, 'ironclad.db'));
      db.prepare('UPDATE notifier_checkpoint SET position = ?').run(before[1]!.position);
      db.close();
      await h.restart();
      const stored = await published();
      expect(stored.length).toBeGreaterThan(before.length);
      expect(notifier().stats()).toMatchObject({ published: stored.length - before.length, duplicates: 0 });
      const r = await reader();
      expect(await r.lastEventSequence()).toBe(stored.length);
      const { got } = await subscribe(r, 1);
      await waitFor(() => got.length >= stored.length, WAIT);
      expectExactlyTheLog(got, stored);
    });

    it('starts after the newest notification when its data directory is new (no checkpoint)', async () => {
      const store = sharedStore();
      h = await createHarness({ NATS_URL: server.url }, { store });
      const id = await h.enroll({ name: 'n-fresh' });
      const before = await published();
      await h.close();
      h = await createHarness({ NATS_URL: server.url }, { store }); // fresh :memory: database, same log
      expect((await h.provision(id, 'manage')).statusCode).toBe(202);
      await h.driveUntil(id, 'manageable');
      const stored = await published();
      expect(notifier().stats()).toMatchObject({ published: stored.length - before.length, duplicates: 0 });
      const { got } = await subscribe(await reader(), 1);
      await waitFor(() => got.length >= stored.length, WAIT);
      expectExactlyTheLog(got, stored);
    });

    it('never trusts a newest notification that is not an event of its own log', async () => {
      const foreign = envelope(randomUUID(), 0, 'NodeEnrolled');
      foreign.position = '999999';
      const r = await createNatsBus({ servers: server.url, log: pino({ level: 'silent' }) }); // sets the streams up
      readers.push(r);
      await r.publishEvent(foreign, { tenant: 'elsewhere' });
      h = await createHarness({ NATS_URL: server.url });
      await h.enroll({ name: 'n-own' });
      const stored = await published();
      const { got } = await subscribe(r, 2);
      await waitFor(() => got.length >= stored.length, WAIT);
      expectExactlyTheLog(got, stored);
    });

    it('stores each event once when two publishers follow the same log (the duplicate window)', async () => {
      const store = sharedStore();
      h = await createHarness({ NATS_URL: server.url }, { store });
      // A second publisher of the same log, as for a moment around a notifier lease hand-over (in
      // cluster mode only the `notifier` leader publishes, so a second Ironclad would not).
      const db = new Database(':memory:');
      const other = createNotifier({ store, db, bus: await reader(), nodeOwner: () => 'default', log: pino({ level: 'silent' }) });
      await other.start();
      try {
        const ids = [await h.enroll({ name: 'n-1' }), await h.enroll({ name: 'n-2' })];
        for (const id of ids) expect((await h.provision(id, 'manage')).statusCode).toBe(202);
        for (const id of ids) await h.driveUntil(id, 'manageable');
        const stored = await published();
        await waitFor(() => other.position() === stored[stored.length - 1]!.position, WAIT);
        expect(notifier().stats().duplicates + other.stats().duplicates).toBeGreaterThan(0);
        const { got } = await subscribe(await reader(), 1);
        await waitFor(() => got.length >= stored.length, WAIT);
        expectExactlyTheLog(got, stored);
        expect(await (await reader()).lastEventSequence()).toBe(stored.length);
      } finally {
        await other.stop();
        db.close();
      }
    });

    it('publishes only from the notifier leader; the next leader resumes without gaps or duplicates', async () => {
      const store = sharedStore();
      const a = await createHarness({ NATS_URL: server.url }, { store });
      h = a;
      const b = await createHarness({ NATS_URL: server.url }, { store });
      const own = (x: Harness): Ownership => x.ic.internals['ownership'] as Ownership;
      const notifierOf = (x: Harness): Notifier => x.ic.internals['notifier'] as Notifier;
      try {
        await waitFor(() => [a, b].filter((x) => own(x).isLeader('notifier')).length === 1, { ...WAIT, what: 'one notifier leader' });
        const [leader, follower] = own(a).isLeader('notifier') ? [a, b] : [b, a];
        for (const name of ['l-1', 'l-2']) await follower.enroll({ name }); // decided by the owner, published by the leader
        let stored = await store.readAll();
        await waitFor(() => notifierOf(leader).position() === stored[stored.length - 1]!.position, { ...WAIT, what: 'the leader published the log' });
        expect(notifierOf(follower).stats().published).toBe(0);

        await leader.close(); // releases its leases: the follower takes the role over
        await waitFor(() => own(follower).isLeader('notifier'), { ...WAIT, what: 'the follower leads' });
        await follower.enroll({ name: 'l-3' });
        stored = await store.readAll();
        await waitFor(() => notifierOf(follower).position() === stored[stored.length - 1]!.position, { ...WAIT, what: 'the new leader published the rest' });
        expect(notifierOf(follower).stats()).toMatchObject({ published: 1, duplicates: 0 }); // only l-3's event: it resumed after the stream's newest
        const { got } = await subscribe(await reader(), 1);
        await waitFor(() => got.length >= stored.length, WAIT);
        expectExactlyTheLog(got, stored);
      } finally {
        await b.close();
      }
    });

    it('reports the bus in /readyz', async () => {
      h = await createHarness({ NATS_URL: server.url });
      const res = await h.req({ method: 'GET', url: '/readyz' });
      expect(res.statusCode).toBe(200);
      expect(res.json().checks.bus).toBe('ok');
    });
  });
} else {
  describe.skip('notifications over NATS JetStream', () => {
    it('needs nats-server', () => undefined);
  });
}
