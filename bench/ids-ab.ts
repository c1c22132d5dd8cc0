/**
 * `node dist/bench/ids-ab.js`: what event ids cost the append path. One SQLite file (WAL,
 * synchronous=normal, as `ironclad serve` opens it) is filled with BENCH_IDS_PREFILL (200,000)
 * events with random (v4) ids, then appends of 2 events to 1,000 streams, 64 appends per
 * event-loop turn (one group commit), BENCH_IDS_EVENTS (40,000) events per run, with ids from
 * `randomUUID` (v4) or `createUuidIds` (v7), runs alternating. Per run: WAL bytes written per
 * event (auto-checkpoint off, the WAL truncated before each run) and CPU µs per event.
 */
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createSqliteEventStore } from '../src/adapters/sqlite/event-store.js';
import { createUuidIds } from '../src/adapters/system/clock.js';
import { removeDir, tempDataDir } from './lib/server.js';

const prefill = Number(process.env['BENCH_IDS_PREFILL'] ?? 200_000);
const perRun = Number(process.env['BENCH_IDS_EVENTS'] ?? 40_000);
const rounds = Number(process.env['BENCH_IDS_ROUNDS'] ?? 3);
const dir = tempDataDir();
const file = join(dir, 'ids.db');
const db = new Database(file);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.pragma('wal_autocheckpoint = 0');
const store = createSqliteEventStore(db);
const revisions = new Map<string, number>();
const v7 = createUuidIds();
const variants = [
  { name: 'v4 (randomUUID)', next: (): string => randomUUID() },
  { name: 'v7 (createUuidIds)', next: (): string => v7.next() },
];

async function appendEvents(n: number, nextId: () => string): Promise<void> {
  for (let done = 0; done < n; ) {
    const turn: Promise<unknown>[] = [];
    for (let i = 0; i < 64 && done < n; i++, done += 2) {
      const stream = `node-${(done / 2) % 1000}`;
      const rev = revisions.get(stream) ?? -1;
      revisions.set(stream, rev + 2);
      const ev = (type: string) => ({ id: nextId(), type, data: { task_id: randomUUID(), target: 'power on' }, metadata: { request_id: 'r', principal: 'p' } });
      turn.push(store.append(stream, [ev('TaskCreated'), ev('PowerActionStarted')], rev < 0 ? 'no_stream' : rev));
    }
    await Promise.all(turn);
  }
}

await appendEvents(prefill, () => randomUUID());
console.log(`ids A/B: ${prefill} events prefilled, ${perRun} per run, 64 appends of 2 events per commit`);
for (let round = 0; round < rounds; round++) {
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
    db.pragma('wal_checkpoint(TRUNCATE)');
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await appendEvents(perRun, v.next);
    const cpu = process.cpuUsage(cpu0);
    const ms = performance.now() - t0;
    const wal = statSync(`${file}-wal`).size;
    console.log(`${v.name.padEnd(20)} WAL ${(wal / perRun).toFixed(0)} bytes/event, CPU ${((cpu.user + cpu.system) / perRun).toFixed(1)} µs/event, ${Math.round(perRun / (ms / 1000))} events/s`);
  }
}
await store.close();
db.close();
removeDir(dir);
