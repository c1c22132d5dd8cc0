/**
 * The ipmi driver against real simulated BMCs (OpenIPMI's ipmi_sim), through the real ipmitool.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createIpmiDriver, type IpmiDriverOptions } from '../../src/adapters/drivers/ipmi.js';
import { DriverError, type Driver, type DriverNode } from '../../src/ports/driver.js';
import { hasIpmiSim, startBmcs, type SimBmc } from '../support/ipmi-sim.js';

const INSTALL_HINT = 'ipmi_sim not installed: apt-get install -y openipmi ipmitool';
const available = hasIpmiSim();
const required = process.env['CI'] === 'true';
if (!available && !required) console.warn(`skipping ipmi driver tests: ${INSTALL_HINT}`);
const suite = available || required ? describe : describe.skip;

const signal = new AbortController().signal;
/** Stands in for the fake driver: every step is done at once. */
const steps: Driver = {
  name: 'steps',
  runStep: async () => ({ kind: 'done' }),
  setPower: async () => 'power on',
  getPower: async () => 'power on',
};

/** Runs `fn` and returns the DriverError it must throw. */
async function driverError(fn: () => Promise<unknown>): Promise<DriverError> {
  const err = await fn().then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DriverError);
  return err as DriverError;
}

suite('ipmi driver against ipmi_sim', () => {
  let fleet: Awaited<ReturnType<typeof startBmcs>> | undefined;
  let bmc: SimBmc;
  let logs: Array<{ msg: string; fields?: Record<string, unknown> }>;
  let errors: string[];
  const driver = (extra: Partial<IpmiDriverOptions> = {}) =>
    createIpmiDriver({ steps, retries: 0, retryDelayMs: 10, pollIntervalMs: 50, log: (msg, fields) => logs.push({ msg, fields }), ...extra });
  const nodeOf = (b: SimBmc, info: Record<string, unknown> = {}): DriverNode => ({ id: `node-${b.port}`, driver_info: { ...b.driverInfo, ...info } });
  const expectFails = async (fn: () => Promise<unknown>): Promise<DriverError> => {
    const err = await driverError(fn);
    errors.push(err.message);
    return err;
  };

  beforeAll(async () => {
    if (!available) throw new Error(`CI=true requires the ipmi simulator: ${INSTALL_HINT}`);
    fleet = await startBmcs(3);
  });
  afterAll(async () => {
    await fleet?.stop();
  });
  beforeEach(async () => {
    logs = [];
    errors = [];
    bmc = fleet!.bmcs[0];
    bmc.setFaulty(false);
    await bmc.setReachable(true);
  });

  describe('power', () => {
    it('powers a machine on and off, reading the state back from the BMC', async () => {
      const d = driver(), node = nodeOf(bmc);
      expect(await d.getPower(node, signal)).toBe(bmc.power());
      expect(await d.setPower(node, 'power on', signal)).toBe('power on');
      expect(bmc.power()).toBe('power on');
      expect(await d.getPower(node, signal)).toBe('power on');
      expect(await d.setPower(node, 'power off', signal)).toBe('power off');
      expect(bmc.power()).toBe('power off');
    });

    it('reboots a running machine with a power cycle and waits until it is back on', async () => {
      const d = driver(), node = nodeOf(bmc);
      await d.setPower(node, 'power on', signal);
      expect(await d.setPower(node, 'rebooting', signal)).toBe('power on');
      expect(bmc.power()).toBe('power on');
      expect(readFileSync(join(bmc.stateDir, 'power'), 'utf8')).toBe('1');
    });

    it('reboots a machine that is off by powering it on', async () => {
      const d = driver(), node = nodeOf(bmc);
      await d.setPower(node, 'power off', signal);
      expect(await d.setPower(node, 'rebooting', signal)).toBe('power on');
      expect(bmc.power()).toBe('power on');
    });

    it('soft powers off a running machine and soft reboots it back on', async () => {
      const d = driver(), node = nodeOf(bmc);
      await d.setPower(node, 'power on', signal);
      expect(await d.setPower(node, 'soft power off', signal)).toBe('power off');
      expect(bmc.power()).toBe('power off');
      await d.setPower(node, 'power on', signal);
      expect(await d.setPower(node, 'soft rebooting', signal)).toBe('power on');
      expect(bmc.power()).toBe('power on');
    });

    it('controls each BMC of a fleet independently', async () => {
      const [a, b, c] = fleet!.bmcs;
      const d = driver();
      await Promise.all([d.setPower(nodeOf(a), 'power off', signal), d.setPower(nodeOf(b), 'power on', signal), d.setPower(nodeOf(c), 'power off', signal)]);
      expect([a.power(), b.power(), c.power()]).toEqual(['power off', 'power on', 'power off']);
      expect(new Set([a.port, b.port, c.port]).size).toBe(3);
    });
  });

  describe('boot device', () => {
    it('sets the boot device and reads it back', async () => {
      const d = driver(), node = nodeOf(bmc);
      for (const [device, stored] of [['pxe', 'pxe'], ['cdrom', 'cdrom'], ['bios', 'bios'], ['disk', 'default']] as const) {
        await d.setBootDevice(node, device);
        expect(bmc.bootDevice()).toBe(stored);
      }
    });

    it('fails permanently when the BMC rejects the boot device although ipmitool exits 0', async () => {
      const d = driver(), node = nodeOf(bmc);
      await d.setBootDevice(node, 'disk');
      bmc.setFaulty('set boot');
      const err = await expectFails(() => d.setBootDevice(node, 'pxe'));
      expect(err.kind).toBe('permanent');
      expect(err.message).toMatch(/did not accept boot device pxe \(reads back disk\)/);
    });

    it('sets pxe before a deploy step and delegates the step', async () => {
      const d = driver(), node = nodeOf(bmc);
      await d.setBootDevice(node, 'disk');
      expect(await d.runStep(node, 'clean', { phase: 'start', signal })).toEqual({ kind: 'done' });
      expect(bmc.bootDevice()).toBe('default');
      expect(await d.runStep(node, 'deploy', { phase: 'start', signal })).toEqual({ kind: 'done' });
      expect(bmc.bootDevice()).toBe('pxe');
    });

    it('fails the deploy step when the boot device does not stick', async () => {
      const d = driver(), node = nodeOf(bmc);
      await d.setBootDevice(node, 'disk');
      bmc.setFaulty('set boot');
      const outcome = await d.runStep(node, 'deploy', { phase: 'start', signal });
      expect(outcome).toMatchObject({ kind: 'fail', message: expect.stringMatching(/boot device to pxe failed/) });
    });
  });

  describe('failures', () => {
    it('reports a dead BMC as transient and unreachable, and recovers when it is back', async () => {
      const d = driver(), node = nodeOf(bmc);
      await bmc.setReachable(false);
      const started = Date.now();
      const err = await expectFails(() => d.getPower(node, signal));
      expect(err.kind).toBe('transient');
      expect(err.message).toMatch(new RegExp(`^BMC 127\\.0\\.0\\.1:${bmc.port} unreachable: .*Unable to establish IPMI v2 / RMCP\\+ session`));
      expect(Date.now() - started).toBeLessThan(5_000);
      await bmc.setReachable(true);
      expect(await d.getPower(node, signal)).toMatch(/^power (on|off)$/);
    });

    it('kills a hanging ipmitool after timeoutMs and retries a bounded number of times', async () => {
      const d = driver({ timeoutMs: 200, retries: 2 }), node = nodeOf(bmc);
      await bmc.kill();
      const err = await expectFails(() => d.getPower(node, signal));
      expect(err.kind).toBe('transient');
      expect(err.message).toBe(`BMC 127.0.0.1:${bmc.port} unreachable: ipmitool timed out after 200 ms`);
      expect(logs.filter((l) => l.msg === 'ipmitool failed, retrying').map((l) => l.fields?.['attempt'])).toEqual([1, 2]);
    });

    it('reports a BMC that answers with errors as transient', async () => {
      const d = driver(), node = nodeOf(bmc);
      bmc.setFaulty(true);
      const err = await expectFails(() => d.setPower(node, 'power on', signal));
      expect(err.kind).toBe('transient');
      expect(err.message).toMatch(/failed chassis power on: .*Unspecified error/);
    });

    it('fails at once and permanently on a wrong password, with a clear message', async () => {
      const d = driver({ retries: 2, retryDelayMs: 1_000 }), node = nodeOf(bmc, { ipmi_password: 'wrong-secret-42' });
      const started = Date.now();
      const err = await expectFails(() => d.setPower(node, 'power on', signal));
      expect(err.kind).toBe('permanent');
      expect(err.message).toBe(`IPMI authentication failed for ${bmc.username}@127.0.0.1:${bmc.port} (check ipmi_username / ipmi_password)`);
      expect(Date.now() - started).toBeLessThan(900);
      expect(logs).toEqual([]);
    });

    it('fails permanently on an unknown user name', async () => {
      const err = await expectFails(() => driver().getPower(nodeOf(bmc, { ipmi_username: 'mallory' }), signal));
      expect(err.kind).toBe('permanent');
      expect(err.message).toMatch(/^IPMI authentication failed for mallory@/);
    });

    it('names every missing driver_info key without calling the BMC', async () => {
      const err = await expectFails(() => driver().getPower({ id: 'n1', driver_info: { ipmi_port: 'x' } }, signal));
      expect(err.kind).toBe('permanent');
      expect(err.message).toBe('node n1: invalid ipmi driver_info: missing ipmi_address, ipmi_username, ipmi_password; ipmi_port must be an integer from 1 to 65535');
      const onlyPassword = await expectFails(() => driver().setPower(nodeOf(bmc, { ipmi_password: undefined }), 'power on', signal));
      expect(onlyPassword.message).toBe('node node-' + bmc.port + ': invalid ipmi driver_info: missing ipmi_password');
    });
  });

  describe('secrets', () => {
    it('passes the password only through IPMI_PASSWORD and never logs or reports it', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'ipmitool-spy-'));
      const spy = join(dir, 'ipmitool');
      writeFileSync(spy, `#!/bin/sh\necho "argv: $*" >> "${dir}/calls"\necho "env: $IPMI_PASSWORD" >> "${dir}/calls"\nexec ipmitool "$@"\n`);
      chmodSync(spy, 0o755);
      try {
        const d = driver({ ipmitool: spy, timeoutMs: 300, retries: 1 });
        const node = nodeOf(bmc);
        await d.setPower(node, 'rebooting', signal);
        await d.setBootDevice(node, 'pxe');
        await expectFails(() => d.getPower(nodeOf(bmc, { ipmi_username: 'nobody' }), signal));
        await expectFails(() => d.getPower(nodeOf(bmc, { ipmi_password: 'wrong-secret-42' }), signal));
        bmc.setFaulty(true);
        await expectFails(() => d.getPower(node, signal));
        bmc.setFaulty(false);
        await bmc.kill();
        await expectFails(() => d.setPower(node, 'power off', signal));
        const calls = readFileSync(join(dir, 'calls'), 'utf8').split('\n');
        const argv = calls.filter((l) => l.startsWith('argv:'));
        expect(argv.length).toBeGreaterThan(4);
        expect(argv.join('\n')).not.toContain(bmc.password);
        expect(argv.every((l) => l.includes(' -E '))).toBe(true);
        expect(argv.join('\n')).not.toContain('wrong-secret-42');
        expect(new Set(calls.filter((l) => l.startsWith('env:')))).toEqual(new Set([`env: ${bmc.password}`, 'env: wrong-secret-42']));
        expect(logs.length).toBeGreaterThan(0);
        expect(errors).toHaveLength(4);
        const reported = JSON.stringify({ logs, errors });
        expect(reported).not.toContain(bmc.password);
        expect(reported).not.toContain('wrong-secret-42');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
