/**
 * The Bus contract: the in-process adapter and the JetStream adapter (against a real nats-server)
 * run this same suite. A fixture gives the bus under test and `peer()`: another client of the
 * same broker, i.e. another process. Timings (ack wait, max deliveries) are set by the suite
 * through the factory so redelivery tests take about a second, not a minute. Nothing sleeps:
 * every wait is on a condition, bounded.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  BusTimeoutError, commandPattern, commandSubject, eventFilter, eventSubject, partitionOf,
  type Bus, type BusSubscription, type CommandReply, type EventEnvelope, type IncomingCommand, type Notification, type WorkDelivery,
} from '../../src/ports/bus.js';
import { waitFor } from '../support/wait-for.js';

export interface BusTimings {
  /** Ack wait of the work and command consumers. */
  ackWaitMs: number;
  maxDeliver: number;
}

export interface BusFixture {
  bus: Bus;
  /** Another client of the same broker (another process). Closed by `cleanup`. */
  peer(): Promise<Bus>;
  cleanup(): Promise<void>;
}

export type BusFactory = (timings: BusTimings) => Promise<BusFixture>;

const TIMINGS: BusTimings = { ackWaitMs: 1_000, maxDeliver: 5 };
const PARTITIONS = 16;
const WAIT = { timeoutMs: 10_000 };

const accepted = (task: Record<string, unknown>): CommandReply => ({ status: 'accepted', task, position: null });

export function envelope(entityId: string, revision: number, type = 'Tested', data: Record<string, unknown> = {}): EventEnvelope {
  return {
    id: randomUUID(), type, entity_type: 'node', entity_id: entityId, revision, position: String(revision + 1), time: new Date().toISOString(),
    data, metadata: { task_id: null, principal: null, request_id: null, correlation_id: null, causation_id: null },
  };
}

/** Two entity ids that fall in different partitions. */
function entitiesInTwoPartitions(): [string, string] {
  const a = randomUUID();
  for (;;) {
    const b = randomUUID();
    if (partitionOf(a, PARTITIONS) !== partitionOf(b, PARTITIONS)) return [a, b];
  }
}

export function busContract(name: string, factory: BusFactory): void {
  describe(`Bus contract: ${name}`, () => {
    let fx: BusFixture | null = null;
    const subs: BusSubscription[] = [];
    const bus = (): Bus => fx!.bus;
    const keep = <T extends BusSubscription>(s: T): T => (subs.push(s), s);

    beforeEach(async () => {
      fx = await factory(TIMINGS);
    });
    afterEach(async () => {
      await Promise.all(subs.splice(0).map((s) => s.close()));
      await fx?.cleanup();
      fx = null;
    });

    describe('commands', () => {
      it('answers a request with the reply of the server that handled it', async () => {
        const seen: IncomingCommand[] = [];
        keep(await bus().serveCommands(commandPattern(), async (c) => {
          seen.push(c);
          return accepted({ id: `task-${(c.payload as { n: number }).n}` });
        }));
        const entity = randomUUID();
        const msgId = randomUUID();
        const reply = await bus().request(commandSubject(entity, PARTITIONS), { n: 7 }, { msgId, timeoutMs: 5_000 });
        expect(reply).toEqual(accepted({ id: 'task-7' }));
        expect(seen).toEqual([{ subject: commandSubject(entity, PARTITIONS), msgId, payload: { n: 7 }, deliveryCount: 1 }]);
      });

      it('carries a rejection with its problem back to the requester', async () => {
        const problem = { code: 'invalid_state', detail: 'not from enroll', current_state: 'enroll', allowed_actions: ['manage'] };
        keep(await bus().serveCommands(commandPattern(), async () => ({ status: 'rejected', problem })));
        const reply = await bus().request(commandSubject(randomUUID(), PARTITIONS), {}, { msgId: randomUUID(), timeoutMs: 5_000 });
        expect(reply).toEqual({ status: 'rejected', problem });
      });

      it('processes a retried publish with the same msgId once and answers it with the first reply', async () => {
        let calls = 0;
        keep(await bus().serveCommands(commandPattern(), async () => accepted({ id: `task-${++calls}` })));
        const subject = commandSubject(randomUUID(), PARTITIONS);
        const msgId = randomUUID();
        const first = await bus().request(subject, { a: 1 }, { msgId, timeoutMs: 5_000 });
        const retry = await (await fx!.peer()).request(subject, { a: 1 }, { msgId, timeoutMs: 5_000 });
        expect(retry).toEqual(first);
        expect(calls).toBe(1);
      });

      it('times out without losing the command: a retry with the same msgId gets its outcome, processed once', async () => {
        let calls = 0;
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        keep(await bus().serveCommands(commandPattern(), async () => {
          calls++;
          await gate;
          return accepted({ id: 'slow-task' });
        }));
        const subject = commandSubject(randomUUID(), PARTITIONS);
        const msgId = randomUUID();
        const err = await bus().request(subject, {}, { msgId, timeoutMs: 300 }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(BusTimeoutError);
        expect((err as BusTimeoutError).msgId).toBe(msgId);
        release();
        expect(await bus().request(subject, {}, { msgId, timeoutMs: 5_000 })).toEqual(accepted({ id: 'slow-task' }));
        expect(calls).toBe(1);
      });

      it('keeps a command published while nobody serves its partition until a server starts', async () => {
        const subject = commandSubject(randomUUID(), PARTITIONS);
        const pending = bus().request(subject, { late: true }, { msgId: randomUUID(), timeoutMs: 8_000 });
        await new Promise((r) => setImmediate(r));
        keep(await (await fx!.peer()).serveCommands(commandPattern(), async (c) => accepted({ payload: c.payload as Record<string, unknown> })));
        expect(await pending).toEqual(accepted({ payload: { late: true } }));
      });

      it('delivers a command again when its handler throws (a transient failure), until it replies', async () => {
        const deliveries: number[] = [];
        keep(await bus().serveCommands(commandPattern(), async (c) => {
          deliveries.push(c.deliveryCount);
          if (deliveries.length === 1) throw new Error('store unreachable');
          return accepted({ id: 'after-retry' });
        }));
        const reply = await bus().request(commandSubject(randomUUID(), PARTITIONS), {}, { msgId: randomUUID(), timeoutMs: 8_000 });
        expect(reply).toEqual(accepted({ id: 'after-retry' }));
        expect(deliveries).toEqual([1, 2]);
      });

      it('routes each partition\'s commands only to the server of that partition', async () => {
        const [a, b] = entitiesInTwoPartitions();
        const got: Record<string, string[]> = { a: [], b: [] };
        keep(await bus().serveCommands(commandPattern(partitionOf(a, PARTITIONS)), async (c) => (got.a!.push(c.subject), accepted({ by: 'a' }))));
        keep(await (await fx!.peer()).serveCommands(commandPattern(partitionOf(b, PARTITIONS)), async (c) => (got.b!.push(c.subject), accepted({ by: 'b' }))));
        expect(await bus().request(commandSubject(a, PARTITIONS), {}, { msgId: randomUUID(), timeoutMs: 5_000 })).toEqual(accepted({ by: 'a' }));
        expect(await bus().request(commandSubject(b, PARTITIONS), {}, { msgId: randomUUID(), timeoutMs: 5_000 })).toEqual(accepted({ by: 'b' }));
        expect(got).toEqual({ a: [commandSubject(a, PARTITIONS)], b: [commandSubject(b, PARTITIONS)] });
      });

      it('refuses a subject that is not ironclad.cmd.<partition>.<entity>', async () => {
        await expect(bus().request('ironclad.cmd.x', {}, { msgId: randomUUID(), timeoutMs: 100 })).rejects.toThrow(TypeError);
        await expect(bus().request('ironclad.cmd.1.*', {}, { msgId: randomUUID(), timeoutMs: 100 })).rejects.toThrow(TypeError);
      });
    });

    describe('work', () => {
      /** Every delivery, in order, with the time it arrived. */
      const recorder = () => {
        const all: { d: WorkDelivery; at: number; by: string }[] = [];
        return { all, handler: (by: string, act: (d: WorkDelivery, n: number) => void | Promise<void>) => async (d: WorkDelivery) => {
          all.push({ d, at: Date.now(), by });
          await act(d, all.length);
        } };
      };

      it('hands each order to one consumer; acked orders leave the backlog', async () => {
        const rec = recorder();
        keep(await bus().consumeWork(rec.handler('a', (d) => d.ack()), { concurrency: 4 }));
        keep(await (await fx!.peer()).consumeWork(rec.handler('b', (d) => d.ack()), { concurrency: 4 }));
        const ids = Array.from({ length: 20 }, () => randomUUID());
        for (const [i, id] of ids.entries()) await bus().publishWork({ n: i }, { msgId: id, key: `node-${i % 3}` });
        await waitFor(() => rec.all.length >= 20, WAIT);
        await waitFor(async () => { const b = await bus().workBacklog(); return b.pending + b.inFlight === 0; }, WAIT);
        expect(rec.all.map((r) => r.d.msgId).sort()).toEqual([...ids].sort());
        expect(rec.all.every((r) => r.d.deliveryCount === 1)).toBe(true);
        expect(rec.all.find((r) => r.d.msgId === ids[5])!.d.order).toEqual({ n: 5 });
      });

      it('stores an order published twice with the same msgId (event id) once', async () => {
        const msgId = randomUUID();
        const first = await bus().publishWork({ op: 'deploy' }, { msgId });
        const again = await (await fx!.peer()).publishWork({ op: 'deploy' }, { msgId });
        expect(first.duplicate).toBe(false);
        expect(again).toEqual({ sequence: first.sequence, duplicate: true });
        const rec = recorder();
        keep(await bus().consumeWork(rec.handler('a', (d) => d.ack())));
        await waitFor(async () => rec.all.length === 1 && (await bus().workBacklog()).inFlight === 0, WAIT);
        expect((await bus().workBacklog()).pending).toBe(0);
        expect(rec.all).toHaveLength(1);
      });

      it('redelivers a naked order after the requested delay', async () => {
        const rec = recorder();
        let nakedAt = 0;
        keep(await bus().consumeWork(rec.handler('a', (d, n) => {
          if (n === 1) {
            nakedAt = Date.now();
            d.nak(400);
            return undefined;
          }
          return d.ack();
        })));
        await bus().publishWork({ op: 'power' }, { msgId: randomUUID() });
        await waitFor(() => rec.all.length === 2, WAIT);
        await waitFor(async () => { const b = await bus().workBacklog(); return b.pending + b.inFlight === 0; }, WAIT);
        expect(rec.all[1]!.d.deliveryCount).toBe(2);
        expect(rec.all[1]!.at - nakedAt).toBeGreaterThanOrEqual(350);
      });

      it('never redelivers a terminated order', async () => {
        const rec = recorder();
        keep(await bus().consumeWork(rec.handler('a', (d) => d.term('bad credentials'))));
        await bus().publishWork({ op: 'deploy' }, { msgId: randomUUID() });
        await waitFor(() => rec.all.length === 1, WAIT);
        // A negative needs time: let one and a half ack waits pass with the backlog empty and no redelivery.
        const quietUntil = rec.all[0]!.at + TIMINGS.ackWaitMs * 1.5;
        await waitFor(async () => { const b = await bus().workBacklog(); return b.pending + b.inFlight === 0 && Date.now() >= quietUntil; }, WAIT);
        expect(rec.all).toHaveLength(1);
      });

      it('does not redeliver a long operation that sends working() heartbeats', async () => {
        const rec = recorder();
        const operationMs = TIMINGS.ackWaitMs * 2.5;
        const longOperation = async (d: WorkDelivery): Promise<void> => {
          const started = Date.now();
          while (Date.now() - started < operationMs) {
            await new Promise((r) => setTimeout(r, TIMINGS.ackWaitMs / 4)); // the operation's own work, not a wait for the test
            d.working();
          }
          await d.ack();
        };
        keep(await bus().consumeWork(rec.handler('a', longOperation)));
        keep(await (await fx!.peer()).consumeWork(rec.handler('b', longOperation)));
        await bus().publishWork({ op: 'clean' }, { msgId: randomUUID() });
        await waitFor(async () => { const b = await bus().workBacklog(); return rec.all.length >= 1 && b.pending + b.inFlight === 0; }, WAIT);
        expect(rec.all).toHaveLength(1);
      });

      it('redelivers an order left unsettled after the ack wait', async () => {
        const rec = recorder();
        keep(await bus().consumeWork(rec.handler('a', (d, n) => (n > 1 ? d.ack() : undefined))));
        await bus().publishWork({ op: 'inspect' }, { msgId: randomUUID() });
        await waitFor(() => rec.all.length === 2, WAIT);
        await waitFor(async () => { const b = await bus().workBacklog(); return b.pending + b.inFlight === 0; }, WAIT);
        expect(rec.all.map((r) => r.d.deliveryCount)).toEqual([1, 2]);
        expect(rec.all[1]!.at - rec.all[0]!.at).toBeGreaterThanOrEqual(TIMINGS.ackWaitMs * 0.9);
      });

      it('gives the work of a consumer that died to another consumer', async () => {
        const rec = recorder();
        const dying = await bus().consumeWork(rec.handler('dying', () => undefined)); // takes it, never settles
        const msgId = randomUUID();
        await bus().publishWork({ op: 'deploy' }, { msgId });
        await waitFor(() => rec.all.length === 1, WAIT);
        await dying.close();
        keep(await (await fx!.peer()).consumeWork(rec.handler('survivor', (d) => d.ack())));
        await waitFor(() => rec.all.length === 2, WAIT);
        await waitFor(async () => { const b = await bus().workBacklog(); return b.pending + b.inFlight === 0; }, WAIT);
        expect(rec.all.map((r) => [r.by, r.d.msgId, r.d.deliveryCount])).toEqual([['dying', msgId, 1], ['survivor', msgId, 2]]);
      });

      it('naks an order whose handler throws a transient error and terminates one that throws a permanent error', async () => {
        const rec = recorder();
        keep(await bus().consumeWork(rec.handler('a', (d, n) => {
          if (d.order['kind'] === 'permanent') throw Object.assign(new Error('bad credentials'), { kind: 'validation' });
          if (n <= 2) throw new Error('BMC unreachable');
          return d.ack();
        })));
        await bus().publishWork({ kind: 'permanent' }, { msgId: randomUUID() });
        await waitFor(() => rec.all.length === 1, WAIT);
        const quietUntil = rec.all[0]!.at + TIMINGS.ackWaitMs * 1.5;
        await waitFor(async () => { const b = await bus().workBacklog(); return b.pending + b.inFlight === 0 && Date.now() >= quietUntil; }, WAIT);
        await bus().publishWork({ kind: 'transient' }, { msgId: randomUUID() });
        await waitFor(async () => { const b = await bus().workBacklog(); return rec.all.length === 3 && b.pending + b.inFlight === 0; }, WAIT);
        expect(rec.all.map((r) => [r.d.order['kind'], r.d.deliveryCount])).toEqual([['permanent', 1], ['transient', 1], ['transient', 2]]);
      });
    });

    describe('notifications', () => {
      const collect = async (b: Bus, opts: { fromSequence?: number; filter?: string }, stopAfter = Infinity) => {
        const got: Notification[] = [];
        const sub = keep(await b.subscribeEvents(opts, async (n) => {
          got.push(n);
          if (got.length === stopAfter) await sub.close();
        }));
        return { got, sub };
      };

      it('publishes each event to its tenant/entity/type subject with msgId = event id, in order per subject', async () => {
        const tenant = `t-${randomUUID()}`;
        const nodes = [randomUUID(), randomUUID(), randomUUID()];
        const published: EventEnvelope[] = [];
        const first = await bus().lastEventSequence();
        for (let rev = 0; rev < 8; rev++) {
          for (const id of nodes) {
            const e = envelope(id, rev, rev % 2 ? 'StepStarted' : 'OperationSucceeded', { to: `s${rev}` });
            published.push(e);
            const ack = await bus().publishEvent(e, { tenant });
            expect(ack.duplicate).toBe(false);
          }
        }
        const { got } = await collect(await fx!.peer(), { fromSequence: first + 1, filter: eventFilter({ tenant }) });
        await waitFor(() => got.length === published.length, WAIT);
        expect(got.map((n) => n.envelope)).toEqual(published);
        for (const [i, n] of got.entries()) {
          expect(n.msgId).toBe(published[i]!.id);
          expect(n.subject).toBe(eventSubject(tenant, published[i]!));
          if (i > 0) expect(n.sequence).toBeGreaterThan(got[i - 1]!.sequence);
        }
        for (const id of nodes) expect(got.filter((n) => n.envelope.entity_id === id).map((n) => n.envelope.revision)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      });

      it('stores an event published twice with the same event id once', async () => {
        const tenant = `t-${randomUUID()}`;
        const e = envelope(randomUUID(), 0, 'NodeEnrolled');
        const before = await bus().lastEventSequence();
        const first = await bus().publishEvent(e, { tenant });
        const again = await (await fx!.peer()).publishEvent(e, { tenant });
        expect(again).toEqual({ sequence: first.sequence, duplicate: true });
        expect(await bus().lastEventSequence()).toBe(before + 1);
        const marker = envelope(randomUUID(), 0, 'Marker');
        await bus().publishEvent(marker, { tenant });
        const { got } = await collect(bus(), { fromSequence: before + 1, filter: eventFilter({ tenant }) });
        await waitFor(() => got.some((n) => n.envelope.id === marker.id), WAIT);
        expect(got.map((n) => n.envelope.id)).toEqual([e.id, marker.id]);
      });

      it('lets a subscriber stop and resume from a sequence without gaps or duplicates', async () => {
        const tenant = `t-${randomUUID()}`;
        const node = randomUUID();
        const start = (await bus().lastEventSequence()) + 1;
        const all: EventEnvelope[] = [];
        const publish = async (n: number): Promise<void> => {
          for (let i = 0; i < n; i++) {
            const e = envelope(node, all.length);
            all.push(e);
            await bus().publishEvent(e, { tenant });
          }
        };
        await publish(30);
        const first = await collect(await fx!.peer(), { fromSequence: start, filter: eventFilter({ tenant }) }, 12);
        // The 12th call is accepted once the handler (which closes the subscription) has returned.
        await waitFor(() => first.got.length === 12 && first.sub.lastSequence() === first.got[11]!.sequence, WAIT);
        await publish(10); // while nobody listens
        const second = await collect(bus(), { fromSequence: first.sub.lastSequence() + 1, filter: eventFilter({ tenant }) });
        await publish(5); // live, after the resume
        await waitFor(() => second.got.length === 33, WAIT);
        const seen = [...first.got.slice(0, 12), ...second.got];
        expect(seen.map((n) => n.envelope.id)).toEqual(all.map((e) => e.id));
        expect(new Set(seen.map((n) => n.sequence)).size).toBe(45);
      });

      it('reports the newest notification and its sequence', async () => {
        const tenant = `t-${randomUUID()}`;
        const e = envelope(randomUUID(), 3, 'TaskFinished', { state: 'succeeded' });
        await bus().publishEvent(envelope(randomUUID(), 0), { tenant });
        const ack = await bus().publishEvent(e, { tenant });
        expect(await bus().lastEventSequence()).toBe(ack.sequence);
        expect(await (await fx!.peer()).lastNotification()).toEqual({ sequence: ack.sequence, subject: eventSubject(tenant, e), msgId: e.id, envelope: e });
      });

      it('starts with the next notification when no sequence is given', async () => {
        const tenant = `t-${randomUUID()}`;
        const node = randomUUID();
        await bus().publishEvent(envelope(node, 0, 'Old'), { tenant });
        const { got } = await collect(bus(), { filter: eventFilter({ tenant }) });
        const fresh = envelope(node, 1, 'New');
        await bus().publishEvent(fresh, { tenant });
        await waitFor(() => got.length === 1, WAIT);
        expect(got[0]!.envelope.id).toBe(fresh.id);
      });

      it('filters by entity', async () => {
        const tenant = `t-${randomUUID()}`;
        const [a, b] = [randomUUID(), randomUUID()];
        const start = (await bus().lastEventSequence()) + 1;
        for (let rev = 0; rev < 3; rev++) {
          await bus().publishEvent(envelope(a, rev), { tenant });
          await bus().publishEvent(envelope(b, rev), { tenant });
        }
        const { got } = await collect(bus(), { fromSequence: start, filter: eventFilter({ entity_id: b }) });
        await waitFor(() => got.length === 3, WAIT);
        expect(got.map((n) => [n.envelope.entity_id, n.envelope.revision])).toEqual([[b, 0], [b, 1], [b, 2]]);
      });

      it('retries the same notification when the handler throws: nothing is skipped', async () => {
        const tenant = `t-${randomUUID()}`;
        const node = randomUUID();
        const start = (await bus().lastEventSequence()) + 1;
        for (let rev = 0; rev < 3; rev++) await bus().publishEvent(envelope(node, rev), { tenant });
        const calls: number[] = [];
        keep(await bus().subscribeEvents({ fromSequence: start, filter: eventFilter({ tenant }) }, (n) => {
          calls.push(n.envelope.revision);
          if (n.envelope.revision === 1 && calls.filter((r) => r === 1).length === 1) throw new Error('downstream unavailable');
        }));
        await waitFor(() => calls.length === 4, WAIT);
        expect(calls).toEqual([0, 1, 1, 2]);
      });
    });
  });
}
