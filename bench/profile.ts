/**
 * `npm run bench:profile`: the server under `node --cpu-prof`, 1,000 fake nodes, then open-loop
 * power commands at BENCH_PROFILE_RATE/s (default 1000) for BENCH_PROFILE_S seconds (default 15).
 * Only the samples taken during the load are ranked (set-up excluded). Prints the top self time,
 * Ironclad's inclusive time and the areas; writes the summary and keeps the .cpuprofile under
 * bench/results/ (open it in Chrome DevTools or speedscope).
 */
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, fakeInfo, mapLimit } from './lib/client.js';
import { monotonicUs, summarizeProfile, type Ranked } from './lib/cpuprofile.js';
import { runLoad, type OpenResult } from './lib/loadgen.js';
import { removeDir, REPO_ROOT, startServer, tempDataDir } from './lib/server.js';

const rate = Number(process.env['BENCH_PROFILE_RATE'] ?? 1000);
const seconds = Number(process.env['BENCH_PROFILE_S'] ?? 15);
const dist = process.env['BENCH_PROFILE_DIST'] === 'zipf' ? 'zipf' : 'uniform';

const profDir = tempDataDir();
// BENCH_CLI_ROOT: profile another build (a copy of dist/ with package.json and node_modules beside it).
const cliRoot = process.env['BENCH_CLI_ROOT'];
const server = await startServer({ nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`], ...(cliRoot ? { cli: join(cliRoot, 'dist', 'src', 'cli', 'main.js') } : {}) });
const client = new Client(server.baseUrl);
const ids = await mapLimit(Array.from({ length: 1000 }), 32, () => client.enroll(fakeInfo()));
const cpu0 = server.cpuUs();
const from = monotonicUs();
const load = await runLoad<OpenResult>({
  mode: 'open', baseUrl: server.baseUrl, nodes: ids, phases: [{ label: 'profile', rate, durationS: seconds }], dist, connections: 64, tag: 'prof',
});
const to = monotonicUs();
const phase = load.phases[0]!;
const cpuPerCmd = (server.cpuUs() - cpu0) / Math.max(1, phase.accepted);
await client.close();
await server.stop('SIGTERM'); // the profile is written as the process exits
const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
if (!file) throw new Error(`no .cpuprofile in ${profDir}\n${server.output()}`);
const summary = summarizeProfile(join(profDir, file), 30, { fromUs: from, toUs: to });

const show = (title: string, rows: Ranked[], n: number): void => {
  console.log(`\n${title}`);
  for (const r of rows.slice(0, n)) console.log(`${r.pct.toFixed(1).padStart(6)} %  ${r.name}`);
};
console.log(`profile: ${rate}/s ${dist} for ${seconds} s; accepted ${phase.accepted}, p99 ${phase.latency.p99} ms, ` +
  `server CPU ${Math.round(cpuPerCmd)} µs/command; ${summary.samples} samples in the load window, ${summary.idle_pct} % idle`);
show('self time (share of busy samples)', summary.self, 25);
show('inclusive, Ironclad functions', summary.inclusive, 20);
show('by area', summary.areas, 20);

const outDir = join(REPO_ROOT, 'bench', 'results');
mkdirSync(outDir, { recursive: true });
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
copyFileSync(join(profDir, file), join(outDir, `profile-${stamp}.cpuprofile`));
writeFileSync(join(outDir, `profile-${stamp}.json`), JSON.stringify({ rate, seconds, dist, accepted: phase.accepted, latency: phase.latency, cpu_us_per_command: Math.round(cpuPerCmd), status: phase.status, summary }, null, 2));
console.log(`\nwritten: bench/results/profile-${stamp}.json (+ .cpuprofile)`);
removeDir(profDir);
removeDir(server.dataDir);
