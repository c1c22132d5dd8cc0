/**
 * `npm run bench`: Ironclad under load, started as a user starts it, measured from outside.
 * BENCH_QUICK=1: a ~1 minute smoke run (smaller fleet, 3 s runs; its numbers are not comparable).
 * BENCH_ONLY=throughput,lag,lifecycles,stacks,scale,replay,recovery,coldload,memory: a subset.
 * BENCH_MODE=embedded (default) or nats (a real nats-server -js is started; one Ironclad process
 * with NATS_URL): every scenario talks REST only, so a mode is one entry in MODES.
 * BENCH_WAIT_QUIET_S=N: first wait up to N s for the machine's load average to drop below its cores.
 * BENCH_SCALE_MAX=100000: extend the cost curve (default 10,000 nodes; 2,000 quick).
 * Output: a table on stdout, everything in bench/results/<timestamp>.json (and latest.json).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { buildFleet, Client, fakeInfo } from './lib/client.js';
import { load1, machineInfo, waitQuiet } from './lib/machine.js';
import type { Ctx } from './lib/measure.js';
import { headline, lat, num, table, verdict, type Row } from './lib/report.js';
import { removeDir, REPO_ROOT, startServer } from './lib/server.js';
import { openReadOnly } from './lib/sqlite-check.js';
import { startNats } from './lib/nats.js';
import { costCurve, lifecycles, projectionLag } from './scenarios/flows.js';
import { actorMemory, coldLoad } from './scenarios/inproc.js';
import { recovery, replay } from './scenarios/restart.js';
import { stacks } from './scenarios/stacks.js';
import { throughput } from './scenarios/throughput.js';

const quick = process.env['BENCH_QUICK'] === '1';
const only = new Set((process.env['BENCH_ONLY'] ?? 'throughput,lag,lifecycles,stacks,scale,replay,recovery,coldload,memory').split(',').map((s) => s.trim()));
const modeName = process.env['BENCH_MODE'] ?? 'embedded';

/** How each mode is set up. Scenarios only see a base URL, so a mode is its server's environment (and what it needs running). */
const MODES: Record<string, { describe: string; setup: () => Promise<{ env: Record<string, string>; stop: () => Promise<void> }> }> = {
  embedded: { describe: 'embedded: SQLite event store + read models, in-process bus', setup: async () => ({ env: {}, stop: async () => undefined }) },
  nats: {
    describe: 'NATS: one process, commands and work orders through JetStream (a real nats-server -js on loopback), events in SQLite',
    setup: async () => {
      const nats = await startNats();
      return { env: { NATS_URL: nats.url }, stop: () => nats.stop() };
    },
  },
};
const mode = MODES[modeName];
if (!mode) {
  console.error(`BENCH_MODE=${modeName}: unknown mode; modes: ${Object.keys(MODES).join(', ')}`);
  process.exit(2);
}
const modeRun = await mode.setup();

// Everything the bench sets; the rest is Ironclad's defaults. IRONCLAD_WORKERS lets 1,000 slow deploys run at once (scenario 6).
const env = { ...modeRun.env, IRONCLAD_WORKERS: '1024' };
const FLEET = quick ? 300 : 1000;
const SCALE_MAX = Number(process.env['BENCH_SCALE_MAX'] ?? (quick ? 2000 : 10_000));
const DEPLOYS = quick ? 100 : 1000;
const DEPLOY_MS = quick ? 3000 : 5000;
const MEMORY_COUNTS = quick ? [10_000] : [10_000, 100_000];
const REPLAY_EVENTS = quick ? 20_000 : 200_000;

const log = (s: string): void => console.log(s);
const started = new Date();
const t0 = performance.now();
const results: Record<string, any> = {};
const errors: Record<string, string> = {};
const machine = machineInfo();
log(`Ironclad bench — ${mode.describe}${quick ? ' — BENCH_QUICK (smoke run)' : ''}`);
log(`${machine.cores} cores (${machine.cpu_model}), node ${machine.node}, commit ${machine.git_commit.slice(0, 10)}${machine.git_dirty ? ' (dirty tree)' : ''}; mode ${modeName}`);
const waitS = Number(process.env['BENCH_WAIT_QUIET_S'] ?? 0);
const loadAtStart = waitS > 0 ? await waitQuiet(cpus().length, waitS, log) : load1();
log(`load average at start: ${loadAtStart}\n`);

async function step<T>(name: string, fn: () => Promise<T>): Promise<T | undefined> {
  if (!only.has(name)) return undefined;
  try {
    const r = await fn();
    results[name] = r;
    return r;
  } catch (err) {
    errors[name] = err instanceof Error ? err.stack ?? err.message : String(err);
    log(`  !! ${name} failed: ${errors[name]!.split('\n').slice(0, 3).join(' ')}`);
    const died = ctx?.server.exitInfo();
    if (died) {
      const tail = ctx!.server.output().slice(-3000);
      errors[name] += `\nserver exited ${JSON.stringify(died)}; its output ends with:\n${tail}`;
      log(`  !! the server exited ${JSON.stringify(died)}; its output ends with:\n${tail}`);
    }
    return undefined;
  }
}

const needServer = ['throughput', 'lag', 'lifecycles', 'stacks', 'scale', 'replay', 'recovery'].some((s) => only.has(s));
let ctx: Ctx | null = null;
let fleet: string[] = [];
if (needServer) {
  const server = await startServer({ env });
  ctx = { quick, server, client: new Client(server.baseUrl), db: openReadOnly(server.dbPath), log };
  log(`server pid ${server.pid} ready in ${Math.round(server.readyMs)} ms at ${server.baseUrl} (data ${server.dataDir})`);
  const f = await buildFleet(ctx.client, FLEET, ['manage', 'provide']);
  fleet = f.ids;
  results['setup'] = { fleet: FLEET, state: 'available', ms: Math.round(f.ms), nodes_per_s: Math.round((FLEET * 1000) / f.ms) };
  log(`fleet: ${FLEET} fake nodes enrolled and taken to "available" in ${(f.ms / 1000).toFixed(1)} s\n`);
}

const tp = ctx ? await step('throughput', () => throughput(ctx!, fleet)) : undefined;
const found = tp?.uniform.found_per_s || (quick ? 400 : 1000);
if (ctx) {
  await step('lag', () => projectionLag(ctx!, fleet, Math.max(50, Math.round(found / 2))));
  await step('lifecycles', () => lifecycles(ctx!));
  await step('stacks', () => {
    ctx!.log('(7) stacks: 200 zero-delay test resources, independent / fan-in / chain, create → task terminal');
    return stacks(ctx!);
  });
}
let deployNodes: string[] = [];
if (ctx) {
  const firstDeploy = SCALE_MAX - DEPLOYS; // the last DEPLOYS nodes enrolled get slow deploys (scenario 6)
  const cc = await step('scale', () => costCurve(ctx!, fleet, Math.max(50, Math.round(found * 0.75)), [SCALE_MAX], (i) => (i >= firstDeploy ? { fake_deploy_ms: DEPLOY_MS } : {})));
  deployNodes = cc ? cc.nodes.slice(-DEPLOYS) : [];
  await step('replay', () => replay(ctx!, env, REPLAY_EVENTS));
  if (deployNodes.length > 0) await step('recovery', () => recovery(ctx!, env, deployNodes, DEPLOY_MS));
  ctx.db.close();
  await ctx.client.close();
  await ctx.server.stop('SIGTERM');
  removeDir(ctx.server.dataDir);
}
await step('coldload', () => coldLoad({ quick, log }));
await step('memory', () => actorMemory({ quick, log }, MEMORY_COUNTS));
await modeRun.stop();

// ---- report ----
const R = results as Record<string, any>;
const rows: Row[] = [];
const u = R['throughput']?.uniform;
const z = R['throughput']?.zipf;
if (R['throughput']) {
  rows.push({ metric: `accepted commands/s at p99 < 20 ms, ${FLEET} nodes, uniform`, measured: num(u.found_per_s, '/s'), target: '≥ 10,000/s (embedded)', verdict: verdict(u.found_per_s >= 10_000) });
  rows.push({ metric: `... Zipf-skewed (s = 0.99)`, measured: num(z.found_per_s, '/s'), target: '≥ 10,000/s (embedded)', verdict: verdict(z.found_per_s >= 10_000) });
  const at100 = R['throughput'].curve.find((c: any) => c.pct === 100)?.run ?? R['throughput'].curve.at(-1).run;
  const at75 = R['throughput'].curve.find((c: any) => c.pct === 75)?.run ?? at100;
  rows.push({ metric: 'server CPU per accepted command (75 % run)', measured: `${num(at75.server_cpu_us_per_cmd, ' µs')} (generator ${num(at75.gen_cpu_us_per_cmd, ' µs')})`, target: '≤ ~100 µs (what 10k/s on one core needs)', verdict: verdict(at75.server_cpu_us_per_cmd <= 100) });
  rows.push({ metric: 'server event-loop delay at 100 % (probe)', measured: at100.server_eld_ms ? `p50 ${at100.server_eld_ms.p50} / p99 ${at100.server_eld_ms.p99} / max ${at100.server_eld_ms.max} ms` : 'not measured', target: '—', verdict: '' });
  const c = R['throughput'].correctness;
  rows.push({ metric: 'accepted = appended = projected (curve runs)', measured: `${c.accepted_202} = ${c.appended_commands} = ${c.projected_tasks} tasks + ${c.coalesced} coalesced`, target: 'equal', verdict: c.ok ? 'ok' : 'FAIL' });
  const i = R['throughput'].integrity;
  rows.push({ metric: 'ordering violations (whole log)', measured: `${i.ordering_violations} (+${i.bad_starts} bad starts) in ${num(i.events)} events`, target: '0', verdict: i.ordering_violations === 0 && i.bad_starts === 0 ? 'ok' : 'FAIL' });
  const o = R['throughput'].overload;
  rows.push({ metric: `overload at 2× (${o.rate}/s): shed 429 / 503`, measured: `${o.shed_429} / ${o.shed_503}; p99 ${o.run.phases[0].latency.p99} ms`, target: 'sheds with 429/503', verdict: o.shed_429 + o.shed_503 > 0 ? 'ok' : 'NOT met' });
  rows.push({ metric: '... server RSS before → max', measured: `${o.rss_before_mb} → ${o.rss_max_mb} MB`, target: 'bounded', verdict: '' });
  const after = o.recovery_p99_by_second.length - (o.backlog_drained_after_s ?? 0);
  rows.push({ metric: `... then ${o.recovery_rate}/s: backlog gone (p99 < 100 ms) after; seconds with p99 ≥ 20 ms after that`, measured: `${o.backlog_drained_after_s ?? 'never'} s; ${o.seconds_over_objective_after_drain} of ${after} s`, target: 'recovers', verdict: o.backlog_drained_after_s === null ? 'NOT met' : 'ok' });
}
if (R['lifecycles']) rows.push({ metric: 'full lifecycles/s (enroll→…→undeploy, read model "available")', measured: `${R['lifecycles'].per_s}/s (${R['lifecycles'].concurrency} clients; p99 ${R['lifecycles'].latency.p99} ms)`, target: '—', verdict: '' });
for (const s of R['stacks'] ?? []) rows.push({ metric: `stack of ${s.resources} resources (${s.shape.replace('_', '-')}) converged`, measured: `${num(s.ms, ' ms')} (${s.state})`, target: '—', verdict: '' });
if (R['lag']) rows.push({ metric: `projection lag at ${R['lag'].rate}/s (202 → read-your-write GET)`, measured: R['lag'].lag ? `p50 ${R['lag'].lag.p50} / p99 ${R['lag'].lag.p99} ms` : 'n/a', target: '—', verdict: '' });
if (R['replay']) rows.push({ metric: `read-model rebuild (${num(R['replay'].events)} events)`, measured: num(R['replay'].events_per_s, ' events/s'), target: '≥ 200,000 events/s', verdict: verdict(R['replay'].events_per_s >= 200_000) });
for (const r of R['coldload'] ?? []) rows.push({ metric: `cold actor load, ${r.events} events`, measured: `${r.with_snapshots.median_ms} ms with snapshots / ${r.without_snapshots.median_ms} ms without`, target: '—', verdict: '' });
for (const m of R['memory'] ?? []) rows.push({ metric: `memory per resident actor, ${num(m.actors)} actors`, measured: num(m.bytes_per_actor, ' bytes'), target: '≤ 5 KB (5,120 bytes)', verdict: verdict(m.bytes_per_actor <= 5120) });
if (R['scale']) {
  const pts = R['scale'].points;
  rows.push({ metric: `cost curve at ${R['scale'].rate}/s: nodes → achieved, p99, CPU`, measured: pts.map((p: any) => `${num(p.nodes)}: ${num(p.run.achieved_per_s)}/s p99 ${p.run.latency.p99} ms ${p.run.server_cpu_us_per_cmd} µs`).join('; '), target: 'flat to 100k', verdict: '' });
}
if (R['recovery']) {
  const r = R['recovery'];
  rows.push({ metric: `recovery after SIGKILL: ${num(r.nodes)} nodes, ${r.in_flight} deploys in flight → ready`, measured: `${num(r.ready_ms, ' ms')}`, target: '< 5 s', verdict: verdict(r.ready_ms < 5000) });
  rows.push({ metric: '... until every interrupted deploy succeeded', measured: `${num(r.all_resumed_ms, ' ms')} (deploy takes ${r.deploy_ms} ms; overhead ${num(r.resume_overhead_ms, ' ms')}; ${JSON.stringify(r.outcomes)})`, target: '—', verdict: '' });
}
if (modeName !== 'nats') rows.push({ metric: 'NATS mode', measured: 'not in this run (BENCH_MODE=nats)', target: '≥ 6,000/s', verdict: 'n/a' });

log(`\n== results (${quick ? 'BENCH_QUICK smoke run' : 'full run'}, ${started.toISOString()}, ${machine.cores} cores, node ${machine.node}) ==`);
log(headline(rows));
if (R['throughput']) {
  log('\nlatency curve (uniform, accept latency from the scheduled send time):');
  log(table(['% of found', 'rate/s', 'achieved/s', 'latency', 'server µs/cmd', 'ELD p99 ms', 'other cores busy'],
    R['throughput'].curve.map((c: any) => [`${c.pct} %`, String(c.run.rate), String(c.run.achieved_per_s), lat(c.run.latency), String(c.run.server_cpu_us_per_cmd), String(c.run.server_eld_ms?.p99 ?? 'n/a'), String(c.run.machine.other_cores)])));
}
const failed = Object.keys(errors);
if (failed.length) log(`\nscenarios that failed: ${failed.join(', ')} (see "errors" in the JSON)`);

const out = {
  meta: {
    started_at: started.toISOString(), duration_s: Math.round((performance.now() - t0) / 1000), quick, mode: modeName,
    machine, load_at_start: loadAtStart, load_at_end: load1(),
    server_env: { ...env, IRONCLAD_LOG_LEVEL: 'warn', IRONCLAD_RATE_LIMIT: '100000000', IRONCLAD_MAX_PENDING: '1000000', IRONCLAD_POWER_SYNC_S: '0' },
    objective_p99_ms: 20, scenarios: [...only],
  },
  headline: rows, results, errors,
};
const dir = join(REPO_ROOT, 'bench', 'results');
mkdirSync(dir, { recursive: true });
const suffix = `${modeName === 'embedded' ? '' : `-${modeName}`}${quick ? '-quick' : ''}`;
const file = join(dir, `${started.toISOString().replace(/[:.]/g, '-')}${suffix}.json`);
writeFileSync(file, JSON.stringify(out, null, 2));
// latest*.json (committed) only from complete runs: a BENCH_ONLY subset must not replace them.
if (!process.env['BENCH_ONLY']) writeFileSync(join(dir, `latest${suffix}.json`), JSON.stringify(out, null, 2));
log(`\nwritten: ${file.slice(REPO_ROOT.length + 1)} (${Math.round((performance.now() - t0) / 1000)} s)`);
process.exit(failed.length ? 1 : 0);
