/**
 * The work plane over a real nats-server (issue 3 "Work orders"): the owner-side dispatcher
 * (src/app/cluster/work-dispatcher.ts) and the worker-side consumer (work-consumer.ts), with a
 * hand-driven Ownership, stub read models and a driver the test controls. Plus one Ironclad in
 * NATS mode running a node's steps through IRONCLAD_WORK instead of its in-process queue.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createNatsBus } from '../../src/adapters/nats/bus.js';
import type { Ownership, OwnershipListener } from '../../src/app/cluster/ownership.js';
import { createWorkConsumer, type WorkConsumer } from '../../src/app/cluster/work-consumer.js';
import { createWorkDispatcher, workMessageOf } from '../../src/app/cluster/work-dispatcher.js';
import type { WorkOrder } from '../../src/app/work/conductor.js';
import { initialNodeState, type NodeState } from '../../src/domain/node/state.js';
import type { TaskRecord } from '../../src/domain/tasks.js';
import { partitionOf, type Bus } from '../../src/ports/bus.js';
import { DriverError, type Driver, type StepOutcome } from '../../src/ports/driver.js';
import { createFakeClock } from '../support/fake-clock.js';
import { createHarness, type Harness } from '../support/harness.js';
import { STACK_ENV, testTemplate } from '../support/stack-api.js';
import { deleteIroncladStreams, natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';
import { waitFor } from '../support/wait-for.js';

const WAIT = { timeoutMs: 15_000 };
const PARTITIONS = 4;
const silent = pino({ level: 'silent' });

/** An Ownership the test moves by hand. */
function handOwnership(initial: number[]) {
  const owned = new Set(initial);
  const listeners = new Set<OwnershipListener>();
  const o: Ownership & { acquire(p: number): void; lose(p: number): void } = {
    partitions: PARTITIONS,
    ownsEntity: (id) => owned.has(partitionOf(id, PARTITIONS)),
    owned: () => owned,
    onChange: (l) => (listeners.add(l), () => void listeners.delete(l)),
    isLeader: () => true,
    onLeader: () => () => {},
    acquire(p) {
      owned.add(p);
      for (const l of listeners) l([p], []);
    },
    lose(p) {
      owned.delete(p);
      for (const l of listeners) l([], [p]);
    },
  };
  return o;
}

let seq = 0;
/** A node of partition `p` running step `step` of a deploy. */
function deploying(p: number, step = `step-${++seq}`): NodeState {
  let id = '';
  for (let i = 0; ; i++) {
    id = `00000000-0000-4000-8000-${String(++seq * 1000 + i).padStart(12, '0')}`;
    if (partitionOf(id, PARTITIONS) === p) break;
  }
  return {
    ...initialNodeState(id), exists: true, provision_state: 'deploying', position: null,
    op: { op_id: `op-${id}`, task_id: `task-${id}`, kind: 'provision', action: 'deploy', step_id: step, operation: 'deploy', phase: 'start', deadline_at: '2030-01-01T00:00:00Z', manual_clean: false },
  };
}

/** A driver whose steps finish when the test says so (or never). */
function heldDriver() {
  const started: string[] = [];
  const release = new Map<string, (o: StepOutcome) => void>();
  const driver: Driver = {
    name: 'fake',
    runStep: (node, _op, ctx) => new Promise<StepOutcome>((resolve, reject) => {
      started.push(node.id);
      release.set(node.id, resolve);
      ctx.signal.addEventListener('abort', () => reject(new DriverError('transient', 'aborted')), { once: true });
    }),
    setPower: async () => 'power on',
    getPower: async () => 'power on',
  };
  return { driver, started, finish: (id: string) => release.get(id)?.({ kind: 'done' }) };
}

if (natsServerOrSkip('cluster work plane')) {
  describe('the work plane over NATS JetStream', () => {
    let server: NatsServer;
    const buses: Bus[] = [];
    const consumers: WorkConsumer[] = [];
    let h: Harness | null = null;

    beforeAll(async () => {
      server = await startNatsServer();
    });
    afterAll(async () => {
      await server?.stop();
    });
    afterEach(async () => {
      await Promise.all(consumers.splice(0).map((c) => c.stop()));
      await Promise.all(buses.splice(0).map((b) => b.close()));
      await h?.close();
      h = null;
      await deleteIroncladStreams(server.url);
    });

    const bus = async (): Promise<Bus> => {
      const b = await createNatsBus({ servers: server.url, log: silent, tuning: { workAckWaitMs: 1_000 } });
      buses.push(b);
      return b;
    };
    const consumer = (b: Bus, driver: Driver, states: Map<string, NodeState>, reports: { order: WorkOrder; outcome: StepOutcome }[], opts: { failReports?: number; failWith?: () => Error; reportAttempts?: number } = {}) => {
      let failures = opts.failReports ?? 0;
      const c = createWorkConsumer({
        bus: b, log: silent, concurrency: 4, heartbeatMs: 300, drivers: { fake: driver },
        driverNode: (s) => ({ id: s.id, driver_info: {} }),
        reportStep: async (order, outcome) => {
          if (failures-- > 0) throw opts.failWith?.() ?? new Error('the owner did not answer');
          reports.push({ order, outcome });
        },
        reportPower: async () => undefined,
        stateAt: async (id) => states.get(id) ?? null,
        reportAttempts: opts.reportAttempts,
      });
      consumers.push(c);
      return c;
    };
    const dispatcher = (b: Bus, ownership: Ownership, running: NodeState[], armed: { deadlines: Set<string>; callbacks: Set<string> }) =>
      createWorkDispatcher({
        bus: b, ownership, clock: createFakeClock(), log: silent,
        runningNodes: () => running, nodesWithDeadlines: () => running, tasksWithPendingCallbacks: () => [] as TaskRecord[],
        deadlines: { reconcile: (s) => void armed.deadlines.add(s.id), forget: (id) => void armed.deadlines.delete(id) },
        callbacks: { reconcile: (t) => void armed.callbacks.add(t.id), forget: (id) => void armed.callbacks.delete(id) },
      });

    it('publishes only the owned entities\' steps, once each, and the newly acquired ones on acquire', async () => {
      const b = await bus();
      const mine = deploying(0);
      const theirs = deploying(1);
      const ownership = handOwnership([0]);
      const armed = { deadlines: new Set<string>(), callbacks: new Set<string>() };
      const d = dispatcher(b, ownership, [mine, theirs], armed);
      d.start();
      d.onBatch({ nodes: new Map([[mine.id, mine], [theirs.id, theirs]]), tasks: new Map() });
      d.onBatch({ nodes: new Map([[mine.id, mine]]), tasks: new Map() }); // the same state again: nothing new
      await waitFor(() => d.stats().published === 1, { ...WAIT, what: 'one order published' });
      expect(await b.workBacklog()).toEqual({ pending: 1, inFlight: 0 });
      expect([...armed.deadlines]).toEqual([mine.id]);

      ownership.acquire(1); // re-publishes every running step of partition 1 (mine is not in it)
      await waitFor(() => d.stats().published === 2, { ...WAIT, what: 'the acquired partition\'s order published' });
      expect(await b.workBacklog()).toEqual({ pending: 2, inFlight: 0 });
      expect([...armed.deadlines].sort()).toEqual([mine.id, theirs.id].sort());

      ownership.lose(1);
      expect([...armed.deadlines]).toEqual([mine.id]);
      ownership.acquire(1); // the order is already in the stream: the re-publish is a duplicate, stored once
      await waitFor(() => d.stats().published === 3, WAIT);
      expect(await b.workBacklog()).toEqual({ pending: 2, inFlight: 0 });
      d.stop();
    });

    it('runs each order once, retries a refused report without running it again, acks only after, and acks a stale order without running it', async () => {
      const b = await bus();
      const current = deploying(0);
      const stale = deploying(0);
      const ownership = handOwnership([0]);
      const d = dispatcher(b, ownership, [current, stale], { deadlines: new Set(), callbacks: new Set() });
      d.start();
      await waitFor(() => d.stats().published === 2, WAIT);
      // by the time a worker reads it, `stale` has moved on to another step
      const states = new Map([[current.id, current], [stale.id, { ...stale, op: { ...stale.op!, step_id: 'a-later-step' } }]]);
      const held = heldDriver();
      const reports: { order: WorkOrder; outcome: StepOutcome }[] = [];
      const c = consumer(b, held.driver, states, reports, { failReports: 2 });
      await c.start();
      await waitFor(() => held.started.length === 1 && c.stats().skipped === 1, { ...WAIT, what: 'the current order runs, the stale one is skipped' });
      expect(held.started).toEqual([current.id]);
      expect(await b.workBacklog()).toEqual({ pending: 0, inFlight: 1 }); // still running: not acked
      held.finish(current.id); // the first two reports fail: retried with the same outcome
      await waitFor(() => reports.length === 1, WAIT);
      expect(held.started).toEqual([current.id]);
      expect(reports[0]).toEqual({ order: expect.objectContaining({ node_id: current.id, step_id: current.op!.step_id }), outcome: { kind: 'done' } });
      await waitFor(async () => (await b.workBacklog()).inFlight === 0, WAIT);
      expect(await b.workBacklog()).toEqual({ pending: 0, inFlight: 0 });
      d.stop();
    });

    it('runs an order again when its report keeps failing, and terminates it on a permanent refusal', async () => {
      const b = await bus();
      const retried = deploying(0);
      const refused = deploying(0);
      const states = new Map([[retried.id, retried], [refused.id, refused]]);
      const held = heldDriver();
      const reports: { order: WorkOrder; outcome: StepOutcome }[] = [];
      // one attempt per delivery: the first delivery's report fails, the order is naked and runs again
      const c = consumer(b, held.driver, states, reports, { failReports: 1, reportAttempts: 1 });
      await c.start();
      await b.publishWork(workMessageOf(retried)! as never, { msgId: retried.op!.step_id!, key: retried.id });
      await waitFor(() => held.started.length === 1, WAIT);
      held.finish(retried.id);
      await waitFor(() => held.started.length === 2, { ...WAIT, what: 'the naked order delivered and run again' });
      held.finish(retried.id);
      await waitFor(() => reports.length === 1, WAIT);
      await waitFor(async () => (await b.workBacklog()).inFlight === 0, WAIT);
      await c.stop();

      const notFound = Object.assign(new Error('Node not found'), { kind: 'not_found' });
      const c2 = consumer(b, held.driver, states, reports, { failReports: 1, failWith: () => notFound });
      await c2.start();
      await b.publishWork(workMessageOf(refused)! as never, { msgId: refused.op!.step_id!, key: refused.id });
      await waitFor(() => held.started.length === 3, WAIT);
      held.finish(refused.id);
      await waitFor(async () => (await b.workBacklog()).inFlight === 0, { ...WAIT, what: 'the refused order terminated' });
      expect(await b.workBacklog()).toEqual({ pending: 0, inFlight: 0 });
      expect(held.started.filter((id) => id === refused.id)).toHaveLength(1);
      expect(reports).toHaveLength(1);
    });

    it('hands a dead worker\'s order to another worker after the ack wait; a long step heartbeats and is not redelivered', async () => {
      const b1 = await bus();
      const b2 = await bus();
      const node = deploying(0);
      const other = deploying(0);
      const states = new Map([[node.id, node], [other.id, other]]);
      const first = heldDriver();
      const second = heldDriver();
      const reports: { order: WorkOrder; outcome: StepOutcome }[] = [];
      const dying = consumer(b1, first.driver, states, reports);
      await dying.start();
      await b1.publishWork(workMessageOf(node)! as never, { msgId: node.op!.step_id!, key: node.id });
      await waitFor(() => first.started.length === 1, WAIT);
      await b1.close(); // the process dies: its delivery is never settled

      // the survivor's deliveries count their working() heartbeats
      const heartbeats = new Map<string, number>();
      const counted: Bus = {
        ...b2,
        consumeWork: (handler, opts) => b2.consumeWork((d) => handler({
          ...d,
          working: () => {
            heartbeats.set(d.msgId, (heartbeats.get(d.msgId) ?? 0) + 1);
            d.working();
          },
        }), opts),
      };
      const survivor = consumer(counted, second.driver, states, reports);
      await survivor.start();
      await waitFor(() => second.started.includes(node.id), { ...WAIT, what: 'the dead worker\'s order redelivered' });
      second.finish(node.id);
      await waitFor(() => reports.length === 1, WAIT);

      // a step that runs for several ack waits stays with its worker: working() every 300 ms, ack wait 1 s
      await b2.publishWork(workMessageOf(other)! as never, { msgId: other.op!.step_id!, key: other.id });
      await waitFor(() => second.started.includes(other.id), WAIT);
      await waitFor(() => (heartbeats.get(other.op!.step_id!) ?? 0) >= 10, { ...WAIT, what: 'ten heartbeats (three ack waits)' });
      expect(second.started.filter((id) => id === other.id), 'delivered again while running').toHaveLength(1);
      expect(first.started).toEqual([node.id]);
      second.finish(other.id);
      await waitFor(() => reports.length === 2, WAIT);
      expect(reports.map((r) => r.order.node_id).sort()).toEqual([node.id, other.id].sort());
      await waitFor(async () => (await b2.workBacklog()).inFlight === 0, WAIT);
    });

    it('an Ironclad with NATS_URL runs its nodes\' steps through IRONCLAD_WORK, not its in-process queue', async () => {
      h = await createHarness({ NATS_URL: server.url }, { persistent: true });
      const id = await h.enroll({ name: 'n-work' });
      for (const [verb, state] of [['manage', 'manageable'], ['provide', 'available'], ['deploy', 'active']] as const) {
        expect((await h.provision(id, verb)).statusCode).toBe(202);
        await h.driveUntil(id, state);
      }
      const consumer = h.ic.internals['workConsumer'] as WorkConsumer;
      // verify, clean, deploy: each acked right after its outcome was accepted
      await waitFor(() => consumer.stats().completed === 3, { ...WAIT, what: 'three orders acked' });
      expect(consumer.stats()).toMatchObject({ running: 0, skipped: 0 });
      expect((h.ic.internals['conductor'] as { stats(): { completed: number } }).stats().completed).toBe(0);
      expect(await (h.ic.internals['bus'] as Bus).workBacklog()).toEqual({ pending: 0, inFlight: 0 });
    });

    it('an Ironclad with NATS_URL runs a stack\'s resource actions through IRONCLAD_WORK, not its in-process pool', async () => {
      h = await createHarness({ ...STACK_ENV, NATS_URL: server.url }, { persistent: true });
      const r = await h.createStack({ name: 's-bus', template: testTemplate({ a: {}, b: { depends_on: ['a'] } }) });
      expect(r.statusCode, r.body).toBe(202);
      expect((await h.finishTask(r.json().task.id)).state).toBe('succeeded');
      expect((await h.stack('s-bus')).status).toBe('CREATE_COMPLETE');
      const consumer = h.ic.internals['workConsumer'] as WorkConsumer;
      await waitFor(() => consumer.stats().completed === 2, { ...WAIT, what: 'two resource actions acked' }); // a, then b
      expect((h.ic.internals['stackConductor'] as { stats(): { completed: number } }).stats().completed).toBe(0);
      expect(await (h.ic.internals['bus'] as Bus).workBacklog()).toEqual({ pending: 0, inFlight: 0 });
    });
  });
}
