/**
 * An `ipmi` node through the API, against real simulated BMCs (ipmi_sim) and the real ipmitool:
 * power actions reach the BMC, the power-state sync follows reality, a dead BMC puts the node
 * into maintenance with the power fault (failing what was queued on it), and the fault clears
 * when the BMC is back — never a user's maintenance. The API runs in the test harness (fake
 * clock for driver step delays and timers); the BMCs and ipmitool run in real time, so every
 * wait here is on a condition with a real-time bound.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createFakeDriver } from '../../src/adapters/drivers/fake.js';
import { createIpmiDriver } from '../../src/adapters/drivers/ipmi.js';
import type { PowerSync } from '../../src/app/work/power-sync.js';
import { createHarness, type Harness } from '../support/harness.js';
import { hasIpmiSim, startBmcs, type SimBmc } from '../support/ipmi-sim.js';
import { waitFor } from '../support/wait-for.js';

type Json = Record<string, any>;

const INSTALL_HINT = 'ipmi_sim not installed: apt-get install -y openipmi ipmitool';
const available = hasIpmiSim();
const required = process.env['CI'] === 'true';
if (!available && !required) console.warn(`skipping ipmi API tests: ${INSTALL_HINT}`);
const suite = available || required ? describe : describe.skip;

/** Consecutive failed sync reads before the power fault (IRONCLAD_POWER_SYNC_FAILURES). */
const FAILURES = 2;
/** A dead BMC costs ipmitool ~2 s per attempt (-R 1 -N 1), so sync passes get a generous bound. */
const SLOW_TEST = { timeout: 60_000 };

suite('an ipmi node through the API, against ipmi_sim', () => {
  let fleet: Awaited<ReturnType<typeof startBmcs>> | undefined;
  let bmc: SimBmc;
  let h: Harness | undefined;
  /** What the ipmi driver logged (its own log hook), for the "password never logged" checks. */
  let driverLogs: string[];

  /**
   * A harness whose ipmi driver makes `retries` extra attempts at once (the defaults pause 1 s
   * between attempts, which only slows these tests down), and polls the status every 50 ms.
   */
  async function boot(retries = 0): Promise<Harness> {
    driverLogs = [];
    h = await createHarness({ IRONCLAD_POWER_SYNC_FAILURES: String(FAILURES) }, {
      drivers: (clock) => {
        const fake = createFakeDriver(clock);
        const ipmi = createIpmiDriver({
          steps: fake, retries, retryDelayMs: 10, pollIntervalMs: 50,
          log: (msg, fields) => driverLogs.push(JSON.stringify({ msg, ...fields })),
        });
        return { fake, ipmi };
      },
    });
    return h;
  }

  const sync = (): Promise<void> => (h!.ic.internals['powerSync'] as PowerSync).syncOnce();

  async function enroll(driverInfo: Json = bmc.driverInfo, name = `bmc-${bmc.port}`): Promise<string> {
    const r = await h!.req({ method: 'POST', url: '/v1/nodes', payload: { name, driver: 'ipmi', driver_info: driverInfo, resource_class: 'baremetal' } });
    expect(r.statusCode, r.body).toBe(201);
    return r.json().id;
  }

  async function power(id: string, target: string, extra: Json = {}): Promise<string> {
    const r = await h!.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target, ...extra } });
    expect(r.statusCode, r.body).toBe(202);
    return r.json().id;
  }

  /** Waits (real time: ipmitool runs for real) until the task is terminal, and returns it. */
  async function finished(taskId: string): Promise<Json> {
    let t: Json = {};
    await waitFor(async () => {
      t = await h!.task(taskId);
      return !['queued', 'running'].includes(t['state']);
    }, { timeoutMs: 20_000, what: `task ${taskId} to finish` });
    return t;
  }

  async function history(id: string): Promise<Json[]> {
    await h!.settle();
    const r = await h!.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000` });
    expect(r.statusCode).toBe(200);
    return r.json().items;
  }

  const typesOf = async (id: string): Promise<string[]> => (await history(id)).map((e) => e.type);

  beforeAll(async () => {
    if (!available) throw new Error(`CI=true requires the ipmi simulator: ${INSTALL_HINT}`);
    fleet = await startBmcs(1);
  });
  afterAll(async () => {
    await fleet?.stop();
  });
  beforeEach(async () => {
    bmc = fleet!.bmcs[0]!;
    bmc.setFaulty(false);
    await bmc.setReachable(true);
    bmc.setPower('power off');
  });
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  describe('power actions', () => {
    it('powers the node on and off: the task succeeds, power_state follows and the BMC changes', async () => {
      await boot();
      const id = await enroll();
      expect(await h!.node(id)).toMatchObject({ driver: 'ipmi', power_state: null, driver_info: { ipmi_password: '******' } });

      expect(await finished(await power(id, 'power on'))).toMatchObject({ action: 'power on', state: 'succeeded', error: null });
      expect(bmc.power()).toBe('power on');
      expect(await h!.node(id)).toMatchObject({ power_state: 'power on', target_power_state: null, current_task: null });

      expect(await finished(await power(id, 'power off'))).toMatchObject({ state: 'succeeded' });
      expect(bmc.power()).toBe('power off');
      expect(await h!.node(id)).toMatchObject({ power_state: 'power off', target_power_state: null });
    });

    it('ends a reboot powered on, from off and from on', async () => {
      await boot();
      const id = await enroll();
      expect(await finished(await power(id, 'rebooting'))).toMatchObject({ state: 'succeeded' });
      expect(bmc.power()).toBe('power on');
      expect((await h!.node(id))['power_state']).toBe('power on');

      expect(await finished(await power(id, 'rebooting'))).toMatchObject({ state: 'succeeded' });
      expect(bmc.power()).toBe('power on');
      expect((await h!.node(id))['power_state']).toBe('power on');
    });

    it('fails a power action on bad credentials with a clear driver_error, at once', async () => {
      await boot(2);
      const id = await enroll({ ...bmc.driverInfo, ipmi_password: 'not-the-password' });
      const task = await finished(await power(id, 'power on'));
      expect(task).toMatchObject({ state: 'failed', error: { code: 'driver_error' } });
      expect(task['error'].message).toMatch(/IPMI authentication failed for admin@127\.0\.0\.1:\d+ \(check ipmi_username \/ ipmi_password\)/);
      expect(bmc.power()).toBe('power off');
      expect(driverLogs.filter((l) => l.includes('retrying')), 'a permanent failure is not retried').toEqual([]);
    });
  });

  describe('power-state sync', () => {
    it('records a power change made behind Ironclad\'s back, and only a change', async () => {
      await boot();
      const id = await enroll();
      await finished(await power(id, 'power on'));

      bmc.setPower('power off');
      await sync();
      const observed = (await history(id)).filter((e) => e.type === 'PowerStateObserved');
      expect(observed.map((e) => e.data)).toEqual([{ power_state: 'power off', previous: 'power on' }]);
      expect(await h!.node(id)).toMatchObject({ power_state: 'power off', maintenance: false, fault: null });

      await sync();
      expect((await typesOf(id)).filter((t) => t === 'PowerStateObserved')).toHaveLength(1);
    });

    it('faults a node whose BMC is dead, fails the deploy queued on it, and clears the fault when the BMC is back', SLOW_TEST, async () => {
      await boot();
      // A slow clean (fake clock: it lasts until the test moves the clock) is the running operation.
      const id = await enroll({ ...bmc.driverInfo, fake_verify_ms: 0, fake_clean_ms: 60_000 });
      expect((await h!.provision(id, 'manage')).statusCode).toBe(202);
      await h!.driveUntil(id, 'manageable');
      const provide = await h!.provision(id, 'provide');
      expect(provide.statusCode).toBe(202);
      const deploy = await h!.provision(id, 'deploy', { on_busy: 'queue' });
      expect(deploy.statusCode, deploy.body).toBe(202);
      expect(deploy.json()).toMatchObject({ action: 'deploy', state: 'queued' });
      expect(await h!.node(id)).toMatchObject({ provision_state: 'cleaning', queued_tasks: [{ id: deploy.json().id }] });

      await bmc.setReachable(false);
      for (let i = 1; i < FAILURES; i++) await sync();
      expect(await h!.node(id), 'below the failure limit').toMatchObject({ maintenance: false, fault: null, queued_tasks: [{ id: deploy.json().id }] });

      await sync();
      const faulted = await h!.node(id);
      expect(faulted).toMatchObject({ maintenance: true, fault: 'power failure', provision_state: 'cleaning', queued_tasks: [] });
      expect(faulted['maintenance_reason']).toMatch(new RegExp(`^power failure: BMC 127\\.0\\.0\\.1:${bmc.port} unreachable`));
      const failed = await h!.task(deploy.json().id);
      expect(failed).toMatchObject({ state: 'failed', error: { code: 'precondition_failed' } });
      expect(failed['error'].message).toMatch(/could not be reached 2 times/);
      const fails = (await history(id)).filter((e) => e.type === 'PowerSyncFailed').map((e) => e.data.consecutive_failures);
      expect(fails).toEqual([1, 2]);

      await bmc.setReachable(true);
      await sync();
      expect(await h!.node(id)).toMatchObject({ maintenance: false, maintenance_reason: null, fault: null });
      const types = await typesOf(id);
      // The first read that succeeds also records the power state, never read before (null).
      expect(types.slice(types.lastIndexOf('PowerSyncFailed') + 1)).toEqual([
        'MaintenanceSet', 'TaskFinished', 'PowerSyncRecovered', 'MaintenanceUnset', 'PowerStateObserved',
      ]);

      // The running clean was never disturbed: it finishes, and the node can deploy again.
      await h!.driveUntil(id, 'available', { stepMs: 1_000 });
      expect((await h!.provision(id, 'deploy')).statusCode).toBe(202);
    });

    it('never clears a maintenance set by a user, before or on top of the fault', SLOW_TEST, async () => {
      await boot();
      const user = await enroll();
      const put = (id: string, reason: string) => h!.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: { reason } });
      expect((await put(user, 'disk swap')).statusCode).toBe(200);

      await bmc.setReachable(false);
      for (let i = 0; i < FAILURES; i++) await sync();
      expect(await h!.node(user), 'a user maintenance is not turned into a fault').toMatchObject({ maintenance: true, maintenance_reason: 'disk swap', fault: null });

      await bmc.setReachable(true);
      await sync();
      expect(await h!.node(user)).toMatchObject({ maintenance: true, maintenance_reason: 'disk swap', fault: null });

      // Faulted first, then a user takes the maintenance over: the BMC answering again keeps it.
      expect((await h!.req({ method: 'DELETE', url: `/v1/nodes/${user}/maintenance` })).statusCode).toBe(200);
      await bmc.setReachable(false);
      for (let i = 0; i < FAILURES; i++) await sync();
      expect(await h!.node(user)).toMatchObject({ maintenance: true, fault: 'power failure' });
      expect((await put(user, 'replace the BMC')).statusCode).toBe(200);
      await bmc.setReachable(true);
      await sync();
      expect(await h!.node(user)).toMatchObject({ maintenance: true, maintenance_reason: 'replace the BMC', fault: null });
    });
  });

  it('never shows the BMC password in logs, views, history or task errors', async () => {
    await boot(1);
    const id = await enroll();
    await finished(await power(id, 'power on'));
    // A BMC that answers with errors: failed reads are retried (and logged), then reported.
    bmc.setFaulty(true);
    for (let i = 0; i < FAILURES; i++) await sync();
    const failedPower = await finished(await power(id, 'power off'));
    expect(failedPower).toMatchObject({ state: 'failed', error: { code: 'driver_error' } });
    bmc.setFaulty(false);
    await sync();

    const node = await h!.node(id);
    const events = await history(id);
    const at0 = await h!.req({ method: 'GET', url: `/v1/nodes/${id}/history/0` });
    const tasks = await h!.req({ method: 'GET', url: `/v1/tasks?resource_id=${id}` });
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['PowerSyncFailed', 'MaintenanceSet', 'PowerSyncRecovered', 'MaintenanceUnset']));
    expect(driverLogs.some((l) => l.includes('retrying')), 'the driver logged its retries').toBe(true);
    const everything = [JSON.stringify(node), JSON.stringify(events), at0.body, tasks.body, ...h!.logs, ...driverLogs].join('\n');
    expect(everything).toContain(String(bmc.port));
    expect(everything).not.toContain(bmc.password);
  });
});
