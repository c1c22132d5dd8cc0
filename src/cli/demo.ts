/**
 * `ironclad demo --ipmi N [--port P]`: real IPMI power control in a minute. Starts N simulated
 * BMCs (OpenIPMI's ipmi_sim, each on its own loopback UDP port), an embedded Ironclad (open, on
 * 127.0.0.1, a temporary data directory unless IRONCLAD_DATA_DIR is set, a short power-sync
 * period) with one `ipmi` node per BMC, prints what to try, and follows the nodes' power events.
 * SIGINT/SIGTERM stop Ironclad and every BMC it started, and remove the temporary files.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hasIpmiSim, startBmcs, type SimBmc } from '../adapters/drivers/ipmi-sim.js';
import { parseConfig, type Config } from '../config.js';
import { createIronclad, StartupError, type Ironclad } from '../main.js';
import type { StoredEvent, Subscription } from '../ports/event-store.js';

const USAGE = 'usage: ironclad demo --ipmi <N (1-50)> [--port <P>]';
/** The demo's power-sync period unless IRONCLAD_POWER_SYNC_S is set: short, to see the sync act. */
const DEMO_SYNC_S = '10';
const MAX_BMCS = 50;

type Write = (s: string) => void;
interface DemoNode { id: string; name: string; bmc: SimBmc }

/** Returns -1 while the demo runs (it ends on a signal), or an exit code when it cannot start. */
export async function demoCommand(args: string[], env: NodeJS.ProcessEnv, out: Write, err: Write): Promise<number> {
  const parsed = parseDemoArgs(args);
  if (typeof parsed === 'string') {
    err(`${parsed}\n${USAGE}\n`);
    return 2;
  }
  if (!hasIpmiSim()) {
    err('ironclad demo: ipmi_sim and ipmitool are needed: apt-get install -y openipmi ipmitool\n');
    return 1;
  }
  const tempData = env['IRONCLAD_DATA_DIR'] ? null : mkdtempSync(join(tmpdir(), 'ironclad-demo-'));
  const config = demoConfig(env, parsed.port, tempData);
  const demo = createDemo(config, tempData, out, err);

  // Handlers first: a signal during start-up waits for it, then stops whatever was started.
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    out(`ironclad demo: ${signal} received, stopping Ironclad and the simulated BMCs\n`);
    demo.shutdown().then(() => process.exit(0), (e: unknown) => {
      err(`ironclad demo: shutdown failed: ${String(e)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  try {
    await demo.start(parsed.bmcs);
  } catch (e) {
    await demo.shutdown();
    if (e instanceof StartupError) {
      err(`ironclad demo: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  return -1;
}

/** The demo's resources: what start() created, shutdown() releases (each at most once). */
function createDemo(config: Config, tempData: string | null, out: Write, err: Write) {
  let fleet: Awaited<ReturnType<typeof startBmcs>> | null = null;
  let ic: Ironclad | null = null;
  let feed: Subscription | null = null;
  let starting: Promise<void> = Promise.resolve();
  let shutting: Promise<void> | null = null;

  async function run(bmcs: number): Promise<void> {
    out(`starting ${bmcs} simulated BMC(s)...\n`);
    fleet = await startBmcs(bmcs);
    ic = await createIronclad({ config });
    await ic.start();
    const address = await ic.listen();
    const nodes = await enrollAll(ic, fleet.bmcs);
    feed = await followPower(ic, nodes, out);
    out(instructions(address, nodes, config, tempData));
  }

  async function release(): Promise<void> {
    await starting.catch(() => undefined);
    await feed?.close().catch(() => undefined);
    await ic?.close().catch((e: unknown) => err(`ironclad demo: closing Ironclad failed: ${String(e)}\n`));
    await fleet?.stop();
    if (tempData) rmSync(tempData, { recursive: true, force: true });
  }

  return {
    start(bmcs: number): Promise<void> {
      starting = run(bmcs);
      return starting;
    },
    shutdown(): Promise<void> {
      shutting ??= release();
      return shutting;
    },
  };
}

function parseDemoArgs(args: string[]): { bmcs: number; port: string | null } | string {
  let values: { ipmi?: string; port?: string };
  try {
    ({ values } = parseArgs({ args, options: { ipmi: { type: 'string' }, port: { type: 'string' } } }));
  } catch (e) {
    return (e as Error).message;
  }
  const bmcs = Number(values.ipmi ?? '2');
  if (!Number.isInteger(bmcs) || bmcs < 1 || bmcs > MAX_BMCS) return `--ipmi must be a whole number from 1 to ${MAX_BMCS}`;
  if (values.port !== undefined && !/^\d+$/.test(values.port)) return '--port must be a port number';
  return { bmcs, port: values.port ?? null };
}

/**
 * The demo always runs open on loopback (no tokens), so the printed curl lines work as they are;
 * everything else comes from the environment, over the demo's defaults.
 */
function demoConfig(env: NodeJS.ProcessEnv, port: string | null, tempData: string | null): Config {
  const { IRONCLAD_TOKENS: _tokens, IRONCLAD_TOKEN_FILE: _file, ...rest } = env;
  return parseConfig({
    IRONCLAD_POWER_SYNC_S: DEMO_SYNC_S,
    IRONCLAD_LOG_LEVEL: 'warn',
    ...rest,
    HOST: '127.0.0.1',
    ...(port !== null ? { PORT: port } : {}),
    ...(tempData ? { IRONCLAD_DATA_DIR: tempData } : {}),
  });
}

/** Enrolls `demo-<i>` per BMC through the API; with a kept data directory, re-points an existing node. */
async function enrollAll(ic: Ironclad, bmcs: SimBmc[]): Promise<DemoNode[]> {
  const nodes: DemoNode[] = [];
  for (const [i, bmc] of bmcs.entries()) {
    const name = `demo-${i + 1}`;
    let r = await ic.app.inject({
      method: 'POST', url: '/v1/nodes',
      payload: { name, driver: 'ipmi', driver_info: bmc.driverInfo, resource_class: 'baremetal', properties: { cpus: 8, memory_mb: 32768, local_gb: 500 } },
    });
    if (r.statusCode === 409 && r.json().code === 'name_conflict') {
      r = await ic.app.inject({ method: 'PATCH', url: `/v1/nodes/${name}`, payload: { driver_info: bmc.driverInfo } });
    }
    if (r.statusCode !== 201 && r.statusCode !== 200) throw new Error(`enrolling ${name} failed: ${r.statusCode} ${r.body}`);
    nodes.push({ id: r.json().id, name, bmc });
  }
  return nodes;
}

const FOLLOWED = new Set([
  'PowerActionStarted', 'PowerActionSucceeded', 'PowerActionFailed', 'PowerStateObserved',
  'PowerSyncFailed', 'PowerSyncRecovered', 'MaintenanceSet', 'MaintenanceUnset',
]);

/** Prints one line per power-related event of the demo's nodes, from now on. */
async function followPower(ic: Ironclad, nodes: DemoNode[], out: Write): Promise<Subscription> {
  const names = new Map(nodes.map((n) => [`node-${n.id}`, n.name]));
  return ic.store.subscribeAll(await ic.store.headPosition(), (events: StoredEvent[]) => {
    for (const e of events) {
      const name = names.get(e.stream);
      if (name && FOLLOWED.has(e.type)) out(`  [${e.time.slice(11, 19)}] ${name}: ${summarize(e)}\n`);
    }
  });
}

function summarize(e: StoredEvent): string {
  const d = e.data as Record<string, any>;
  switch (e.type) {
    case 'PowerActionStarted': return `${d['target']} requested`;
    case 'PowerActionSucceeded': return `power action done, now ${d['power_state']}`;
    case 'PowerActionFailed': return `power action failed: ${d['error']?.message}`;
    case 'PowerStateObserved': return `power sync found ${d['power_state']} (Ironclad had ${d['previous'] ?? 'nothing'})`;
    case 'PowerSyncFailed': return `power sync could not reach the BMC (${d['consecutive_failures']} in a row): ${d['message']}`;
    case 'PowerSyncRecovered': return 'the BMC answers again';
    case 'MaintenanceSet': return `maintenance on${d['fault'] ? `, fault "${d['fault']}"` : ''}${d['reason'] ? `: ${d['reason']}` : ''}`;
    default: return 'maintenance off';
  }
}

function instructions(base: string, nodes: DemoNode[], config: Config, tempData: string | null): string {
  const first = nodes[0]!;
  const put = (target: string): string =>
    `curl -s -X PUT -H 'content-type: application/json' -d '{"target": "${target}"}' ${base}/v1/nodes/${first.name}/states/power`;
  const lines = [
    '',
    `Ironclad demo ready at ${base} with ${nodes.length} simulated BMC(s) (power sync every ${config.IRONCLAD_POWER_SYNC_S} s, data in ${tempData ?? config.IRONCLAD_DATA_DIR})`,
    '',
    'Nodes (driver "ipmi": real ipmitool over RMCP+ to each BMC; the password is never shown back):',
    ...nodes.map((n) => `  ${n.name}  id ${n.id}  BMC 127.0.0.1:${n.bmc.port}  ipmi_sim pid ${n.bmc.pid()}  state ${n.bmc.stateDir}`),
    '',
    'Try:',
    `  # power ${first.name} on, off, or reboot it (the task answers 202; add -H 'Prefer: wait=10' to wait for it)`,
    `  ${put('power on')}`,
    `  ${put('power off')}`,
    `  ${put('rebooting')}`,
    '  # watch power_state, maintenance and fault of every node',
    `  watch -n1 "curl -s '${base}/v1/nodes' | jq -r '.items[] | [.name, .power_state, .maintenance, .fault] | @tsv'"`,
    `  # what the simulated machine really is (1 = on); press its power button behind Ironclad's back`,
    `  cat ${first.bmc.stateDir}/power`,
    `  echo 1 > ${first.bmc.stateDir}/power`,
    `  # hang its BMC: after ${config.IRONCLAD_POWER_SYNC_FAILURES} failed syncs ${first.name} is in maintenance with fault "power failure"; revive it: the fault clears`,
    `  kill -STOP ${first.bmc.pid()}`,
    `  kill -CONT ${first.bmc.pid()}`,
    `  # the whole API: ${base}/docs`,
    '',
    'Power events of the demo nodes follow. Ctrl-C stops Ironclad and the BMCs.',
    '',
  ];
  return lines.join('\n');
}
