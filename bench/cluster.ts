/**
 * `node dist/bench/cluster.js`: the NATS mode with 1 and 3 processes sharing one fleet, as the
 * cluster runs it (one nats-server -js, one shared event store file, a data directory and port
 * per process, the same keys everywhere). Nodes are enrolled through the first process; the open-
 * loop power commands go round-robin to every process, which route them to the partition's owner.
 * Per rate: accepted, p50/p99 (from the scheduled send time), CPU µs per accepted command summed
 * over the Ironclad processes (nats-server not included), and accepted = appended in the shared log.
 * BENCH_CLUSTER_SIZES (1,3), BENCH_CLUSTER_RATES (100,200,400), BENCH_CLUSTER_S (8), BENCH_CLUSTER_NODES (300).
 * BENCH_CLUSTER_ROOT: run another build (a copy of `dist/` with package.json and node_modules beside
 * it), for A/B runs alternated by the caller. BENCH_CLUSTER_PROF=1: the first process runs under
 * `node --cpu-prof`; the samples of the measured runs are ranked and the profile kept under bench/results/.
 * Before the first rate, the CPU of the idle processes is measured for 5 s (`idle_cores`).
 * Results: bench/results/<timestamp>-cluster.json.
 */
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Client, fakeInfo, mapLimit } from './lib/client.js';
import { monotonicUs, summarizeProfile, type ProfileSummary } from './lib/cpuprofile.js';
import { runLoad, type OpenResult } from './lib/loadgen.js';
import { machineInfo, NoiseMeter } from './lib/machine.js';
import { startNats } from './lib/nats.js';
import { REPO_ROOT, removeDir, startServer, tempDataDir, type Server } from './lib/server.js';
import { openReadOnly } from './lib/sqlite-check.js';

const list = (v: string | undefined, d: string): number[] => (v ?? d).split(',').map(Number);
const sizes = list(process.env['BENCH_CLUSTER_SIZES'], '1,3');
const rates = list(process.env['BENCH_CLUSTER_RATES'], '100,200,400');
const seconds = Number(process.env['BENCH_CLUSTER_S'] ?? 8);
const fleet = Number(process.env['BENCH_CLUSTER_NODES'] ?? 300);
const root = process.env['BENCH_CLUSTER_ROOT'];
const cli = root ? { cli: join(root, 'dist', 'src', 'cli', 'main.js') } : {};
const profile = process.env['BENCH_CLUSTER_PROF'] === '1';
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

const out: Record<string, unknown>[] = [];
console.log(`cluster bench: ${sizes.join(' and ')} processes, ${rates.join('/')}/s × ${seconds} s, ${fleet} nodes; loadavg ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
for (const size of sizes) {
  const nats = await startNats();
  const dir = tempDataDir();
  const storeFile = join(dir, 'events.db');
  const env = {
    NATS_URL: nats.url, IRONCLAD_EVENT_STORE_FILE: storeFile,
    IRONCLAD_SECRET_KEY: randomBytes(32).toString('hex'), IRONCLAD_WEBHOOK_SECRET: randomBytes(16).toString('hex'),
  };
  const servers: Server[] = [];
  try {
    // One after the other: the first creates the streams and the shared file's schema.
    const profDir = join(dir, 'prof');
    for (let i = 1; i <= size; i++) {
      const nodeArgs = profile && i === 1 ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [];
      servers.push(await startServer({ dataDir: join(dir, `p${i}`), env, nodeArgs, ...cli }));
    }
    const client = new Client(servers[0]!.baseUrl);
    const ids = await mapLimit(Array.from({ length: fleet }), 32, () => client.enroll(fakeInfo()));
    const urls = servers.map((s) => s.baseUrl);
    const spec = (label: string, rate: number, durationS: number, tag: string) => ({
      mode: 'open' as const, baseUrl: urls[0]!, extraBaseUrls: urls.slice(1), nodes: ids, phases: [{ label, rate, durationS }], dist: 'uniform' as const, connections: 32, tag,
    });
    await runLoad<OpenResult>(spec('warm', 100, 2, `c${size}w`));
    const db = openReadOnly(storeFile);
    await sleep(1000);
    const idle0 = servers.reduce((n, s) => n + s.cpuUs(), 0);
    await sleep(5000);
    const idleCores = (servers.reduce((n, s) => n + s.cpuUs(), 0) - idle0) / 5e6;
    console.log(`idle: ${idleCores.toFixed(3)} cores (${size} process${size > 1 ? 'es' : ''})`);
    const window = { fromUs: monotonicUs(), toUs: 0 };
    for (const rate of rates) {
      const tag = `c${size}r${rate}`;
      const from = (db.prepare('SELECT coalesce(max(position), 0) AS p FROM events').get() as { p: number }).p;
      const cpu0 = servers.reduce((n, s) => n + s.cpuUs(), 0);
      const noise = new NoiseMeter();
      noise.start();
      const r = await runLoad<OpenResult>(spec('run', rate, seconds, tag));
      const cpu = servers.reduce((n, s) => n + s.cpuUs(), 0) - cpu0;
      const others = noise.stop(cpu + r.gen.cpu_us);
      const p = r.phases[0]!;
      await new Promise((res) => setTimeout(res, 2000)); // let the outcomes land before counting
      // The read models are per process (their own data directories): count in the shared log only.
      const appended = (db.prepare(`SELECT count(*) AS n FROM events WHERE position > ? AND type IN ('TaskCreated', 'TaskCoalesced')
        AND json_extract(metadata, '$.request_id') LIKE ?`).get(from, `${tag}-%`) as { n: number }).n;
      const row = {
        processes: size, idle_cores: Number(idleCores.toFixed(3)), rate, accepted: p.accepted, status: p.status, p50: p.latency.p50, p99: p.latency.p99, max: p.latency.max,
        cpu_us_per_cmd: Math.round(cpu / Math.max(1, p.accepted)), appended, others_cores: others.other_cores, load1: others.load1,
      };
      out.push(row);
      console.log(JSON.stringify(row));
    }
    window.toUs = monotonicUs();
    db.close();
    await client.close();
    if (profile) {
      await servers[0]!.stop('SIGTERM'); // the profile is written as the process exits
      const f = readdirSync(profDir).find((x) => x.endsWith('.cpuprofile'));
      if (f) {
        const summary: ProfileSummary = summarizeProfile(join(profDir, f), 40, window);
        const keep = join(REPO_ROOT, 'bench', 'results', `profile-${stamp}-cluster${size}.cpuprofile`);
        mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
        copyFileSync(join(profDir, f), keep);
        console.log(`profile (${summary.samples} samples, ${summary.idle_pct} % idle), kept in ${keep.slice(REPO_ROOT.length + 1)}`);
        for (const [title, rows, n] of [['self', summary.self, 40], ['inclusive, Ironclad', summary.inclusive, 25], ['areas', summary.areas, 20]] as const) {
          console.log(`\n${title}`);
          for (const r of rows.slice(0, n)) console.log(`${r.pct.toFixed(1).padStart(6)} %  ${r.name}`);
        }
        out.push({ processes: size, profile: summary });
      }
    }
  } finally {
    for (const s of servers) await s.stop('SIGTERM');
    await nats.stop();
    removeDir(dir);
  }
}
const dirOut = join(REPO_ROOT, 'bench', 'results');
mkdirSync(dirOut, { recursive: true });
const file = join(dirOut, `${stamp}-cluster.json`);
writeFileSync(file, JSON.stringify({ machine: machineInfo(), build: root ?? 'this tree', seconds, fleet, runs: out }, null, 2));
console.log(`written: ${file.slice(REPO_ROOT.length + 1)}`);
