/**
 * `ironclad demo --ipmi N` as a newcomer runs it: the built CLI in its own process starts real
 * simulated BMCs and an Ironclad enrolled with them; a power action through the API reaches the
 * BMC; SIGTERM stops everything and leaves no ipmi_sim process or temporary file behind, and
 * even a SIGKILLed demo leaves no ipmi_sim running.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { hasIpmiSim } from '../support/ipmi-sim.js';
import { CLI, REPO_ROOT, childEnv, freePort } from '../support/server-process.js';
import { waitFor } from '../support/wait-for.js';

const INSTALL_HINT = 'ipmi_sim not installed: apt-get install -y openipmi ipmitool';
const available = hasIpmiSim();
const required = process.env['CI'] === 'true';
if (!available && !required) console.warn(`skipping the demo test: ${INSTALL_HINT}`);
const suite = available || required ? describe : describe.skip;

type Exit = { code: number | null; signal: NodeJS.Signals | null };

interface Demo {
  output(): string;
  /** True once the process has exited. */
  ended(): boolean;
  exited: Promise<Exit>;
  kill(signal: NodeJS.Signals): void;
}

interface ReadyDemo {
  base: string;
  dataDir: string;
  nodes: Array<{ name: string; id: string; pid: number; stateDir: string }>;
}

function startDemo(args: string[]): Demo {
  const child = spawn(process.execPath, [CLI, 'demo', ...args], { cwd: REPO_ROOT, env: childEnv({}), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  let ended = false;
  const exited = new Promise<Exit>((res) => child.once('exit', (code, signal) => {
    ended = true;
    res({ code, signal });
  }));
  return { output: () => out, ended: () => ended, exited, kill: (s) => void child.kill(s) };
}

/** Waits for the ready line and reads what the demo printed about itself. */
async function ready(d: Demo, port: number): Promise<ReadyDemo> {
  await waitFor(() => /Ironclad demo ready at (\S+)/.test(d.output()) || d.ended(), {
    timeoutMs: 30_000, what: 'the demo to print its ready line',
  }).catch((e: Error) => {
    throw new Error(`${e.message}\n${d.output()}`);
  });
  const out = d.output();
  const base = /Ironclad demo ready at (\S+)/.exec(out)?.[1];
  expect(base, out).toBe(`http://127.0.0.1:${port}`);
  const nodes = [...out.matchAll(/^ {2}(demo-\d+) {2}id (\S+) {2}BMC 127\.0\.0\.1:(\d+) {2}ipmi_sim pid (\d+) {2}state (\S+)$/gm)]
    .map((m) => ({ name: m[1]!, id: m[2]!, pid: Number(m[4]), stateDir: m[5]! }));
  const dataDir = /data in (\S+)\)/.exec(out)?.[1] ?? '';
  expect(existsSync(dataDir), out).toBe(true);
  return { base: base!, dataDir, nodes };
}

/** Ids of live (not zombie) ipmi_sim processes whose command line names one of `dirs`. */
function ipmiSimsUsing(dirs: string[]): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).flatMap((p) => {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const zombie = /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${p}/stat`, 'utf8'));
      return !zombie && cmd[0]?.endsWith('ipmi_sim') && dirs.some((d) => cmd.includes(d)) ? [Number(p)] : [];
    } catch {
      return []; // the process ended while we looked
    }
  });
}

suite('ironclad demo --ipmi', () => {
  let demo: Demo | null = null;
  const leftovers: string[] = [];
  afterEach(async () => {
    if (demo && !demo.ended()) {
      demo.kill('SIGTERM');
      const exited = await Promise.race([demo.exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
      if (exited === null) demo.kill('SIGKILL');
      await demo.exited;
    }
    demo = null;
    for (const dir of leftovers.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('runs simulated BMCs and an Ironclad that powers them, and cleans everything up on SIGTERM', { timeout: 90_000 }, async () => {
    if (!available) throw new Error(`CI=true requires the ipmi simulator: ${INSTALL_HINT}`);
    const port = await freePort();
    const d = (demo = startDemo(['--ipmi', '2', '--port', String(port)]));
    const { base, dataDir, nodes } = await ready(d, port);
    expect(nodes.map((n) => n.name)).toEqual(['demo-1', 'demo-2']);
    expect(ipmiSimsUsing(nodes.map((n) => n.stateDir)).sort()).toEqual(nodes.map((n) => n.pid).sort());

    const listed = (await (await fetch(`${base}/v1/nodes`)).json()) as { items: Array<Record<string, any>> };
    expect(listed.items.map((n) => [n.name, n.driver, n.driver_info.ipmi_password]).sort()).toEqual([['demo-1', 'ipmi', '******'], ['demo-2', 'ipmi', '******']]);

    const put = await fetch(`${base}/v1/nodes/${nodes[0]!.id}/states/power`, {
      method: 'PUT', headers: { 'content-type': 'application/json', prefer: 'wait=20' }, body: JSON.stringify({ target: 'power on' }),
    });
    expect(await put.json()).toMatchObject({ action: 'power on', state: 'succeeded' });
    expect(await (await fetch(`${base}/v1/nodes/demo-1`)).json()).toMatchObject({ power_state: 'power on', target_power_state: null });
    expect(readFileSync(`${nodes[0]!.stateDir}/power`, 'utf8').trim()).toBe('1');
    await waitFor(() => d.output().includes('demo-1: power action done, now power on'), { what: 'the demo to print the power event' });

    d.kill('SIGTERM');
    expect(await d.exited, d.output()).toEqual({ code: 0, signal: null });
    expect(d.output()).toContain('SIGTERM received');
    expect(ipmiSimsUsing(nodes.map((n) => n.stateDir)), 'ipmi_sim processes left running').toEqual([]);
    expect(nodes.filter((n) => existsSync(n.stateDir)), 'BMC directories left behind').toEqual([]);
    expect(existsSync(dataDir), 'temporary data directory left behind').toBe(false);
  });

  it('leaves no ipmi_sim running even when the demo is killed with SIGKILL', { timeout: 90_000 }, async () => {
    if (!available) throw new Error(`CI=true requires the ipmi simulator: ${INSTALL_HINT}`);
    const port = await freePort();
    const d = (demo = startDemo(['--ipmi', '2', '--port', String(port)]));
    const { dataDir, nodes } = await ready(d, port);
    leftovers.push(dataDir, ...nodes.map((n) => n.stateDir)); // nothing can remove files after a SIGKILL
    const dirs = nodes.map((n) => n.stateDir);
    expect(ipmiSimsUsing(dirs)).toHaveLength(2);

    d.kill('SIGKILL');
    await d.exited;
    await waitFor(() => ipmiSimsUsing(dirs).length === 0, { timeoutMs: 5_000, what: 'the orphaned BMCs to stop' });
  });

  it('refuses a bad BMC count with its usage', async () => {
    const d = (demo = startDemo(['--ipmi', 'zero']));
    expect(await d.exited).toEqual({ code: 2, signal: null });
    expect(d.output()).toMatch(/--ipmi must be a whole number from 1 to 50\nusage: ironclad demo/);
  });
});
