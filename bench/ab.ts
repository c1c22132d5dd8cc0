/**
 * `node dist/bench/ab.js`: an A/B comparison of two builds under the same open-loop load, runs
 * alternating (A B A B ...) so a change in how busy the shared machine is hits both alike.
 * BENCH_AB_BASE: the other build's root (a copy of an earlier `dist/` with `package.json` and a
 * `node_modules` link beside it); BENCH_AB_RATES (comma list, default 300,600), BENCH_AB_S (8),
 * BENCH_AB_ROUNDS (2), BENCH_AB_NODES (300); BENCH_AB_NEW: the B build's root (default this tree);
 * BENCH_AB_NODE_ARGS: node flags for B only (e.g. --max-semi-space-size=32). Per run: server CPU µs per accepted command (from
 * /proc, the least noisy number here), p50/p99 accept latency, other processes' CPU, load average.
 */
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { Client, fakeInfo, mapLimit } from './lib/client.js';
import { runLoad, type OpenResult } from './lib/loadgen.js';
import { NoiseMeter } from './lib/machine.js';
import { CLI, removeDir, startServer } from './lib/server.js';

const base = process.env['BENCH_AB_BASE'];
if (!base) {
  console.error('BENCH_AB_BASE=<root of the other build> is required');
  process.exit(2);
}
const rates = (process.env['BENCH_AB_RATES'] ?? '300,600').split(',').map(Number);
const seconds = Number(process.env['BENCH_AB_S'] ?? 8);
const rounds = Number(process.env['BENCH_AB_ROUNDS'] ?? 2);
const fleet = Number(process.env['BENCH_AB_NODES'] ?? 300);
const variants = [
  { name: 'A (base)', cli: join(base, 'dist', 'src', 'cli', 'main.js'), nodeArgs: [] as string[] },
  { name: 'B (new)', cli: process.env['BENCH_AB_NEW'] ? join(process.env['BENCH_AB_NEW'], 'dist', 'src', 'cli', 'main.js') : CLI, nodeArgs: (process.env['BENCH_AB_NODE_ARGS'] ?? '').split(' ').filter(Boolean) },
];

async function one(cli: string, rate: number, tag: string, nodeArgs: string[]) {
  // Shedding off: both builds must do every command, or CPU per accepted command is not comparable.
  const server = await startServer({ cli, nodeArgs, env: { IRONCLAD_SHED_EVENT_LOOP_DELAY_MS: '0' } });
  try {
    const client = new Client(server.baseUrl);
    const ids = await mapLimit(Array.from({ length: fleet }), 32, () => client.enroll(fakeInfo()));
    // Warm-up: a fresh server compiles the power path on its first commands.
    await runLoad<OpenResult>({ mode: 'open', baseUrl: server.baseUrl, nodes: ids, phases: [{ label: 'warm', rate: 200, durationS: 2 }], dist: 'uniform', connections: 64, tag: `${tag}w` });
    const cpu0 = server.cpuUs();
    const noise = new NoiseMeter();
    noise.start();
    const r = await runLoad<OpenResult>({ mode: 'open', baseUrl: server.baseUrl, nodes: ids, phases: [{ label: 'ab', rate, durationS: seconds }], dist: 'uniform', connections: 64, tag });
    const p = r.phases[0]!;
    const cpu = (server.cpuUs() - cpu0) / Math.max(1, p.accepted);
    const others = noise.stop(server.cpuUs() - cpu0 + r.gen.cpu_us);
    await client.close();
    return { rate, accepted: p.accepted, status: p.status, cpu_us: Math.round(cpu), p50: p.latency.p50, p99: p.latency.p99, others: others.other_cores, load1: loadavg()[0]!.toFixed(2) };
  } finally {
    await server.stop('SIGTERM');
    removeDir(server.dataDir);
  }
}

console.log(`A/B: ${rates.join(', ')}/s × ${seconds} s, ${rounds} rounds, ${fleet} nodes; loadavg ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
for (let round = 0; round < rounds; round++) {
  for (const rate of rates) {
    const order = round % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) {
      const r = await one(v.cli, rate, `ab${round}${rate}${v.name[0]}`, v.nodeArgs);
      console.log(`${v.name.padEnd(14)} ${JSON.stringify(r)}`);
    }
  }
}
