/**
 * The power-state sync without ipmi_sim. Through the API with the fake driver
 * (`fake_power_state` is the machine's real power, `fake_bmc_reachable: false` a dead BMC):
 * divergences, the power fault and its maintenance, the queued task it fails, recovery, and a
 * user's maintenance left alone. Then the sync service on its own, with a fake clock and a stub
 * driver: bounded concurrency, checks spread over the period, and a timer that re-arms.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createPowerSync, SPREAD_SHARE, type PowerSyncDeps } from '../../src/app/work/power-sync.js';
import type { PowerResult } from '../../src/domain/node/commands.js';
import { initialNodeState, type NodeState } from '../../src/domain/node/state.js';
import type { Driver } from '../../src/ports/driver.js';
import type { Logger } from '../../src/ports/logger.js';
import { createFakeClock, type FakeClock } from '../support/fake-clock.js';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';

type Json = Record<string, any>;

describe('power-state sync through the API (fake driver)', () => {
  const FAILURES = 3;
  let h: Harness;
  afterEach(async () => h?.close());

  const boot = async (env: Record<string, string> = {}): Promise<Harness> =>
    (h = await createHarness({ IRONCLAD_POWER_SYNC_FAILURES: String(FAILURES), ...env }));
  const sync = (): Promise<void> => (h.ic.internals['powerSync'] as { syncOnce(): Promise<void> }).syncOnce();
  const patchInfo = async (id: string, driverInfo: Json): Promise<void> => {
    const r = await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { driver_info: driverInfo } });
    expect(r.statusCode, r.body).toBe(200);
  };
  const putMaintenance = (id: string, reason: string) => h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: { reason } });
  async function history(id: string): Promise<Json[]> {
    await h.settle();
    const r = await h.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000` });
    expect(r.statusCode).toBe(200);
    return r.json().items;
  }
  const observed = async (id: string): Promise<Json[]> => (await history(id)).filter((e) => e.type === 'PowerStateObserved').map((e) => e.data);

  it('records the real power state when it differs from the stored one, and nothing when it matches', async () => {
    await boot();
    const id = await h.enroll({ driver_info: { fake_power_state: 'power on' } });
    await sync();
    expect(await h.node(id)).toMatchObject({ power_state: 'power on' });

    await patchInfo(id, { fake_power_state: 'power off' });
    await sync();
    await sync();
    expect(await observed(id)).toEqual([{ power_state: 'power on', previous: null }, { power_state: 'power off', previous: 'power on' }]);
    expect(await h.node(id)).toMatchObject({ power_state: 'power off', maintenance: false, fault: null });
  });

  it('faults the node after IRONCLAD_POWER_SYNC_FAILURES failed reads and fails the deploy queued on it', async () => {
    await boot();
    // The BMC is dead from the start; verify and clean do not need it (the fake clean is slow).
    const id = await h.enroll({ driver_info: { fake_bmc_reachable: false, fake_verify_ms: 0, fake_clean_ms: 60_000 } });
    await h.provision(id, 'manage');
    await h.driveUntil(id, 'manageable');
    expect((await h.provision(id, 'provide')).statusCode).toBe(202);
    const deploy = await h.provision(id, 'deploy', { on_busy: 'queue' });
    expect(deploy.json()).toMatchObject({ action: 'deploy', state: 'queued' });

    for (let i = 1; i < FAILURES; i++) await sync();
    expect(await h.node(id), 'below the limit').toMatchObject({ maintenance: false, fault: null, queued_tasks: [{ id: deploy.json().id }] });

    await sync();
    const n = await h.node(id);
    expect(n).toMatchObject({
      maintenance: true, fault: 'power failure', provision_state: 'cleaning', queued_tasks: [],
      maintenance_reason: 'power failure: fake BMC unreachable (fake_bmc_reachable: false)',
    });
    expect(n['allowed_actions']).not.toContain('deploy');
    expect(await h.task(deploy.json().id)).toMatchObject({
      state: 'failed', error: { code: 'precondition_failed', message: expect.stringContaining(`could not be reached ${FAILURES} times`) },
    });

    // More failures keep counting without a second MaintenanceSet; the running clean still ends.
    await sync();
    await h.driveUntil(id, 'available', { stepMs: 1_000 });
    const events = await history(id);
    expect(events.filter((e) => e.type === 'PowerSyncFailed').map((e) => e.data.consecutive_failures)).toEqual([1, 2, 3, 4]);
    expect(events.filter((e) => e.type === 'MaintenanceSet')).toHaveLength(1);
    expect(await h.node(id)).toMatchObject({ provision_state: 'available', maintenance: true, fault: 'power failure' });
    expect((await h.provision(id, 'deploy')).json()).toMatchObject({ code: 'in_maintenance' });
  });

  it('clears the fault and its maintenance when the BMC answers again', async () => {
    await boot();
    const id = await h.enroll({ driver_info: { fake_bmc_reachable: false, fake_power_state: 'power on' } });
    for (let i = 0; i < FAILURES; i++) await sync();
    expect(await h.node(id)).toMatchObject({ maintenance: true, fault: 'power failure', power_state: null });

    await patchInfo(id, { fake_bmc_reachable: true });
    await sync();
    expect(await h.node(id)).toMatchObject({ maintenance: false, maintenance_reason: null, fault: null, power_state: 'power on' });
    const types = (await history(id)).map((e) => e.type);
    expect(types.slice(types.indexOf('MaintenanceSet') + 1)).toEqual(['NodeUpdated', 'PowerSyncRecovered', 'MaintenanceUnset', 'PowerStateObserved']);

    // The failure count starts again from zero.
    await patchInfo(id, { fake_bmc_reachable: false });
    for (let i = 1; i < FAILURES; i++) await sync();
    expect(await h.node(id)).toMatchObject({ maintenance: false, fault: null });
  });

  it('never clears a maintenance set by a user, whether set before the failures or on top of the fault', async () => {
    await boot();
    const id = await h.enroll();
    expect((await putMaintenance(id, 'disk swap')).statusCode).toBe(200);
    await patchInfo(id, { fake_bmc_reachable: false });
    for (let i = 0; i < FAILURES; i++) await sync();
    expect(await h.node(id)).toMatchObject({ maintenance: true, maintenance_reason: 'disk swap', fault: null });
    await patchInfo(id, { fake_bmc_reachable: true });
    await sync();
    expect(await h.node(id)).toMatchObject({ maintenance: true, maintenance_reason: 'disk swap', fault: null });

    const other = await h.enroll({ driver_info: { fake_bmc_reachable: false } });
    for (let i = 0; i < FAILURES; i++) await sync();
    expect(await h.node(other)).toMatchObject({ maintenance: true, fault: 'power failure' });
    expect((await putMaintenance(other, 'replace the BMC')).statusCode).toBe(200);
    await patchInfo(other, { fake_bmc_reachable: true });
    await sync();
    expect(await h.node(other)).toMatchObject({ maintenance: true, maintenance_reason: 'replace the BMC', fault: null });
  });

  it('runs on its own every IRONCLAD_POWER_SYNC_S seconds once started', async () => {
    await boot({ IRONCLAD_POWER_SYNC_S: '10' });
    const id = await h.enroll({ driver_info: { fake_power_state: 'power on' } });
    const tick = async (ms: number): Promise<void> => {
      h.clock.advance(ms);
      await new Promise((r) => setImmediate(r));
    };
    await tick(9_000);
    expect((await h.node(id))['power_state'], 'not before the first period').toBeNull();
    // One node: its check is the first of the pass, at the period's start.
    await waitFor(async () => {
      await tick(500);
      return (await h.node(id))['power_state'] === 'power on';
    }, { what: 'the first periodic pass' });
    await patchInfo(id, { fake_power_state: 'power off' });
    await waitFor(async () => {
      await tick(1_000);
      return (await h.node(id))['power_state'] === 'power off';
    }, { what: 'the next periodic pass' });
    expect((await observed(id)).map((d) => d['power_state'])).toEqual(['power on', 'power off']);
  });
});

/** The sync service alone: a fake clock, stub nodes, a stub driver whose reads take clock time. */
describe('the power-sync service', () => {
  const silent: Logger = { info() {}, warn() {}, debug() {}, error() {}, child: () => silent };
  const nodesOf = (n: number): NodeState[] =>
    Array.from({ length: n }, (_, i) => ({ ...initialNodeState(`node-${i}`), exists: true }));

  interface Rig {
    clock: FakeClock;
    reads: Array<{ node: string; at: number }>;
    reports: Array<{ node: string; result: PowerResult }>;
    maxInFlight(): number;
    errors: unknown[];
    sync: ReturnType<typeof createPowerSync>;
  }

  /**
   * `readMs`: how long each read takes on the fake clock. `failFor`: node ids whose BMC answers
   * with an error. `hangFor`: node ids whose read never ends unless its signal aborts it.
   */
  function rig(opts: {
    nodes: NodeState[] | (() => NodeState[]); concurrency: number; periodS?: number; readMs?: number; failFor?: Set<string>; hangFor?: Set<string>;
  }): Rig {
    const clock = createFakeClock(0);
    const reads: Rig['reads'] = [];
    const reports: Rig['reports'] = [];
    const errors: unknown[] = [];
    let inFlight = 0;
    let max = 0;
    const driver: Driver = {
      name: 'stub',
      runStep: async () => ({ kind: 'done' }),
      setPower: async () => 'power on',
      async getPower(node, signal) {
        reads.push({ node: node.id, at: clock.now() });
        max = Math.max(max, ++inFlight);
        try {
          if (opts.hangFor?.has(node.id)) {
            await new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
          }
          await new Promise<void>((r) => (opts.readMs ? clock.setTimeout(r, opts.readMs) : setImmediate(r)));
          if (opts.failFor?.has(node.id)) throw new Error('BMC unreachable');
          return 'power on';
        } finally {
          inFlight--;
        }
      },
    };
    const deps: PowerSyncDeps = {
      // The stub stands in for the nodes' driver ('fake' in their state).
      clock, periodS: opts.periodS ?? 0, concurrency: opts.concurrency, drivers: { fake: driver },
      log: { ...silent, error: (obj) => void errors.push(obj) },
      nodes: typeof opts.nodes === 'function' ? opts.nodes : () => opts.nodes as NodeState[],
      driverNode: (s) => ({ id: s.id, driver_info: {} }),
      observe: async (node, result) => void reports.push({ node, result }),
    };
    return { clock, reads, reports, errors, maxInFlight: () => max, sync: createPowerSync(deps) };
  }

  /**
   * Moves the fake clock in `stepMs` steps until `cond` holds, letting the event loop turn before
   * each step (the stub's work is promise-based, so one turn lets started checks reach their next wait).
   */
  async function advanceUntil(clock: FakeClock, cond: () => boolean, stepMs: number, what: string, maxSteps = 5_000): Promise<void> {
    for (let i = 0; i < maxSteps; i++) {
      await new Promise((r) => setImmediate(r));
      if (cond()) return;
      clock.advance(stepMs);
    }
    throw new Error(`not reached after ${maxSteps} steps of ${stepMs} ms: ${what}`);
  }

  it('never runs more reads at once than its concurrency, and reads every node once per pass', async () => {
    const r = rig({ nodes: nodesOf(50), concurrency: 4 });
    await r.sync.syncOnce();
    expect(r.maxInFlight()).toBe(4);
    expect(r.reads.map((x) => x.node).sort()).toEqual(nodesOf(50).map((n) => n.id).sort());
    expect(r.reports).toHaveLength(50);
  });

  it('stays within its concurrency when slow reads pile up during a spread pass', async () => {
    // 40 nodes over 8 s = one start every 200 ms, but each read takes 5 s: without the bound ~25 would overlap.
    const r = rig({ nodes: nodesOf(40), concurrency: 3, readMs: 5_000 });
    const pass = r.sync.syncOnce(8_000);
    await advanceUntil(r.clock, () => r.sync.rounds() === 1, 100, 'the pass to end');
    await pass;
    expect(r.maxInFlight()).toBe(3);
    expect(r.reports).toHaveLength(40);
  });

  it('spreads the checks evenly over the span it is given instead of starting them all at once', async () => {
    const r = rig({ nodes: nodesOf(10), concurrency: 8 });
    const pass = r.sync.syncOnce(8_000);
    await advanceUntil(r.clock, () => r.sync.rounds() === 1, 100, 'the pass to end');
    await pass;
    const times = r.reads.map((x) => x.at);
    expect(times).toEqual([0, 800, 1_600, 2_400, 3_200, 4_000, 4_800, 5_600, 6_400, 7_200]);
  });

  it('starts a pass every period, spread over 80% of it, and re-arms after each pass', async () => {
    const r = rig({ nodes: nodesOf(5), concurrency: 2, periodS: 10 });
    r.sync.start();
    r.clock.advance(9_900);
    await new Promise((res) => setImmediate(res));
    expect(r.reads, 'nothing before the first period ends').toEqual([]);

    // Steps of 100 ms land exactly on every due time (the fake clock fires timers at the step's end).
    await advanceUntil(r.clock, () => r.sync.rounds() === 3, 100, 'three passes');
    const byPass = [0, 1, 2].map((p) => r.reads.slice(p * 5, p * 5 + 5).map((x) => x.at));
    const period = 10_000;
    byPass.forEach((times, p) => {
      const start = (p + 1) * period;
      expect(times[0]).toBe(start);
      // Increasing start times, within the first 80% of the period.
      times.slice(1).forEach((t, i) => expect(t).toBeGreaterThan(times[i]!));
      expect(times[4]! - start).toBeGreaterThanOrEqual(0.6 * period * SPREAD_SHARE);
      expect(times[4]! - start).toBeLessThan(period * SPREAD_SHARE);
    });
    r.sync.stop();
  });

  it('keeps its timer armed after a pass that failed, and reports failed reads as failures', async () => {
    let calls = 0;
    const nodes = nodesOf(2);
    const r = rig({
      nodes: () => {
        if (++calls === 1) throw new Error('read model unavailable');
        return nodes;
      },
      concurrency: 2, periodS: 5, failFor: new Set(['node-1']),
    });
    r.sync.start();
    await advanceUntil(r.clock, () => r.reports.length === 2, 500, 'the pass after the failed one');
    expect(r.errors).toEqual([expect.objectContaining({ err: expect.objectContaining({ message: 'read model unavailable' }) })]);
    expect(r.reports).toEqual(expect.arrayContaining([
      { node: 'node-0', result: { ok: true, power_state: 'power on' } },
      { node: 'node-1', result: { ok: false, message: 'BMC unreachable' } },
    ]));
    r.sync.stop();
  });

  it('gives up a read that hangs after 30 s and reports it as a failure', async () => {
    const r = rig({ nodes: nodesOf(2), concurrency: 2, hangFor: new Set(['node-0']) });
    const pass = r.sync.syncOnce();
    await advanceUntil(r.clock, () => r.sync.rounds() === 1, 1_000, 'the pass to end');
    await pass;
    expect(r.clock.now()).toBe(30_000);
    expect(r.reports).toEqual([
      { node: 'node-1', result: { ok: true, power_state: 'power on' } },
      { node: 'node-0', result: { ok: false, message: 'power read timed out after 30000 ms' } },
    ]);
  });

  it('stops promptly: reads in flight are aborted, pending checks dropped, nothing reported after stop()', async () => {
    const r = rig({ nodes: nodesOf(10), concurrency: 2, hangFor: new Set(['node-3']) });
    const pass = r.sync.syncOnce(10_000);
    await advanceUntil(r.clock, () => r.reads.length === 4, 100, 'the hanging read to start');
    r.sync.stop();
    await pass; // resolves although node-3's read would hang and 6 checks were still to come
    expect(r.clock.pending(), 'no spread wait or read timeout left armed').toBe(0);
    r.clock.advance(60_000);
    await new Promise((res) => setImmediate(res));
    expect(r.reports.map((x) => x.node), 'the aborted read is not reported as a BMC failure').toEqual(['node-0', 'node-1', 'node-2']);
    expect(r.reads).toHaveLength(4);
  });
});
