import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createStackConductor } from '../../src/app/stacks/stack-conductor.js';
import { ResourceActionFailed, type ResourceWorker } from '../../src/app/stacks/resource-worker.js';
import type { ResourceOutcomeReport } from '../../src/domain/stack/commands.js';
import { pendingWorkOrders, type StackWorkOrder } from '../../src/domain/stack/work.js';
import { createSim, tpl } from '../support/stack-sim.js';
import { waitFor } from '../support/wait-for.js';

const log = pino({ level: 'silent' });

/** A stack state with two pending work orders (a and b, no dependencies). */
function stateWithOrders() {
  const sim = createSim();
  sim.create(tpl({ a: { value: 1 }, b: { value: 2 } }));
  return sim.state;
}

function recorder() {
  const reports: ResourceOutcomeReport[] = [];
  return { reports, report: async (_id: string, r: ResourceOutcomeReport) => void reports.push(r) };
}

describe('stack conductor', () => {
  it('runs each order once however often the state shows it, and reports outputs', async () => {
    const runs: string[] = [];
    const worker: ResourceWorker = {
      type: 'ironclad::test::resource',
      run: async (o) => (runs.push(o.name), { physical_id: `p-${o.name}`, attributes: { output: o.properties['value'] } }),
    };
    const r = recorder();
    const c = createStackConductor({ workers: [worker], concurrency: 1, log, report: r.report });
    const s = stateWithOrders();
    c.reconcile(s);
    c.reconcile(s);
    await waitFor(() => r.reports.length === 2, { what: 'two reports' });
    expect(runs.sort()).toEqual(['a', 'b']);
    const orders = pendingWorkOrders(s);
    expect(r.reports).toEqual(expect.arrayContaining(orders.map((o) => ({
      traversal_id: o.traversal_id, action_id: o.action_id, record_id: o.record_id, phase: o.phase, outcome: 'complete',
      outputs: { physical_id: `p-${o.name}`, attributes: { output: o.properties['value'] } }, error: null,
    }))));
  });

  it('reports ResourceActionFailed with its code, a crash as resource_failed, an unknown type as resource_failed', async () => {
    const worker: ResourceWorker = {
      type: 'ironclad::test::resource',
      run: async (o: StackWorkOrder) => {
        if (o.name === 'a') throw new ResourceActionFailed('no_capacity', 'no node left');
        throw new TypeError('boom');
      },
    };
    const r = recorder();
    const s = stateWithOrders();
    createStackConductor({ workers: [worker], concurrency: 4, log, report: r.report }).reconcile(s);
    await waitFor(() => r.reports.length === 2);
    const names = new Map(pendingWorkOrders(s).map((o) => [o.action_id, o.name]));
    const byRecord = (name: string) => r.reports.find((x) => names.get(x.action_id) === name);
    expect(byRecord('a')).toMatchObject({ outcome: 'failed', outputs: null, error: { code: 'no_capacity', message: 'no node left' } });
    expect(byRecord('b')).toMatchObject({ outcome: 'failed', error: { code: 'resource_failed', message: 'boom' } });

    const none = recorder();
    createStackConductor({ workers: [], concurrency: 1, log, report: none.report }).reconcile(stateWithOrders());
    await waitFor(() => none.reports.length === 2);
    expect(none.reports[0]!.error).toEqual({ code: 'resource_failed', message: 'no worker handles resource type ironclad::test::resource in this process' });
  });

  it('stop aborts running actions without reporting them (they run again after a restart)', async () => {
    const started: AbortSignal[] = [];
    const worker: ResourceWorker = {
      type: 'ironclad::test::resource',
      run: (_o, ctx) => new Promise((_resolve, reject) => {
        started.push(ctx.signal);
        ctx.signal.addEventListener('abort', () => reject(new Error('aborted')));
      }),
    };
    const r = recorder();
    const c = createStackConductor({ workers: [worker], concurrency: 8, log, report: r.report });
    c.reconcile(stateWithOrders());
    await waitFor(() => started.length === 2);
    c.stop();
    expect(started.every((s) => s.aborted)).toBe(true);
    await new Promise((res) => setImmediate(res));
    expect(r.reports).toEqual([]);
  });

  it('dispatches an order again when its report could not be recorded', async () => {
    let runs = 0;
    let fail = true;
    const worker: ResourceWorker = { type: 'ironclad::test::resource', run: async () => (runs++, { physical_id: 'p', attributes: {} }) };
    const c = createStackConductor({
      workers: [worker], concurrency: 1, log,
      report: async () => {
        if (fail) throw new Error('store down');
      },
    });
    const sim = createSim();
    sim.create(tpl({ a: {} }));
    c.reconcile(sim.state);
    await waitFor(() => runs === 1);
    await new Promise((res) => setImmediate(res));
    fail = false;
    c.reconcile(sim.state);
    await waitFor(() => runs === 2, { what: 'second dispatch' });
  });

  it('refuses two workers for one type', () => {
    const w: ResourceWorker = { type: 'x', run: async () => null };
    expect(() => createStackConductor({ workers: [w, w], concurrency: 1, log, report: async () => undefined })).toThrow('two resource workers for type x');
  });
});
