/**
 * `node dist/bench/replay-ab.js`: read-model rebuild speed of two builds on the same log, runs
 * alternating. BENCH_REPLAY_SRC: an ironclad.db to take the events from (made once with
 * BENCH_REPLAY_MAKE=1: a server, 1,000 nodes taken to `available`, then power commands at 800/s
 * for BENCH_REPLAY_MAKE_S seconds; the data directory is kept). BENCH_AB_BASE / BENCH_AB_NEW as in
 * ab.ts; BENCH_AB_ROUNDS (2). Each run: a fresh data directory holding only the events, started as
 * `ironclad serve`; rebuild = time to /readyz minus the time of a restart with the checkpoint.
 */
import { copyFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildFleet, Client } from './lib/client.js';
import { runLoad, type OpenResult } from './lib/loadgen.js';
import { CLI, removeDir, startServer, tempDataDir } from './lib/server.js';

const rootCli = (root: string | undefined): string => (root ? join(root, 'dist', 'src', 'cli', 'main.js') : CLI);

if (process.env['BENCH_REPLAY_MAKE'] === '1') {
  const server = await startServer({ cli: rootCli(process.env['BENCH_AB_NEW']) });
  const client = new Client(server.baseUrl);
  const fleet = await buildFleet(client, 1000, ['manage', 'provide']);
  await runLoad<OpenResult>({ mode: 'open', baseUrl: server.baseUrl, nodes: fleet.ids, phases: [{ label: 'make', rate: 800, durationS: Number(process.env['BENCH_REPLAY_MAKE_S'] ?? 40) }], dist: 'uniform', connections: 64, tag: 'make' });
  await client.close();
  await server.stop('SIGTERM');
  console.log(`log made in ${server.dbPath}`);
  process.exit(0);
}

const src = process.env['BENCH_REPLAY_SRC'];
if (!src) throw new Error('BENCH_REPLAY_SRC=<ironclad.db> is required (or BENCH_REPLAY_MAKE=1 to make one)');
const variants = [
  { name: 'A (base)', cli: rootCli(process.env['BENCH_AB_BASE']) },
  { name: 'B (new)', cli: rootCli(process.env['BENCH_AB_NEW']) },
];
const template = join(tempDataDir(), 'events-only.db');
{
  const rw = new Database(template);
  rw.pragma('journal_mode = DELETE');
  const from = new Database(src, { readonly: true });
  rw.exec((from.prepare("SELECT sql FROM sqlite_master WHERE name = 'events'").get() as { sql: string }).sql);
  from.close();
  rw.exec(`ATTACH DATABASE '${src.replace(/'/g, "''")}' AS src`);
  rw.exec('INSERT INTO events SELECT * FROM src.events ORDER BY position');
  rw.exec('DETACH DATABASE src');
  rw.close();
}
const events = (() => {
  const d = new Database(template, { readonly: true });
  const n = (d.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  d.close();
  return n;
})();
console.log(`replay A/B: ${events} events; loadavg ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
for (let round = 0; round < Number(process.env['BENCH_AB_ROUNDS'] ?? 2); round++) {
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
    const dataDir = tempDataDir();
    copyFileSync(template, join(dataDir, 'ironclad.db'));
    let server = await startServer({ dataDir, cli: v.cli });
    const rebuild = server.readyMs;
    const cpu = server.cpuUs();
    await server.stop('SIGTERM');
    server = await startServer({ dataDir, cli: v.cli });
    const restart = server.readyMs;
    const cpuRestart = server.cpuUs();
    await server.stop('SIGTERM');
    removeDir(dataDir);
    const eps = Math.round(events / Math.max(0.001, (rebuild - restart) / 1000));
    const epsCpu = Math.round(events / Math.max(0.001, (cpu - cpuRestart) / 1e6));
    console.log(`${v.name.padEnd(10)} rebuild ${Math.round(rebuild)} ms, restart ${Math.round(restart)} ms → ${eps} events/s (by CPU: ${epsCpu} events/CPU-s); load1 ${loadavg()[0]!.toFixed(2)}`);
  }
}
