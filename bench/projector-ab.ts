/**
 * `node dist/bench/projector-ab.js`: the projector's CPU per event with and without the actor's
 * folded states (src/runtime/folded-states.ts), in one process, on the same events.
 * BENCH_PROJ_SRC: an ironclad.db whose first BENCH_PROJ_EVENTS (100,000) events are used (e.g. the
 * replay-ab log). A pre-pass folds every stream as the actors did and hands each state over; then
 * the projector is fed batches of BENCH_PROJ_BATCH (64, a live event-loop turn's worth) events,
 * either those very objects ("handed": it takes the actor's state) or copies of them ("folded": it
 * folds, as for another process's events). Fresh read-model file (WAL, no auto-checkpoint) per run;
 * runs alternate. Per run: CPU µs and WAL bytes written per event.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { createProjector } from '../src/app/projector.js';
import { createNodesReadModel } from '../src/app/read-models/nodes.js';
import { createReadModelSchema } from '../src/app/read-models/schema.js';
import { createStacksReadModel } from '../src/app/read-models/stacks.js';
import { createTasksReadModel } from '../src/app/read-models/tasks.js';
import { evolveNode, initialNodeState, type NodeState } from '../src/domain/node/state.js';
import { evolveStack, initialStackState, type StackState } from '../src/domain/stack/state.js';
import type { EventStore, StoredEvent } from '../src/ports/event-store.js';
import type { Logger } from '../src/ports/logger.js';
import { handOverFolded } from '../src/runtime/folded-states.js';
import { removeDir, tempDataDir } from './lib/server.js';

const src = process.env['BENCH_PROJ_SRC'];
if (!src) throw new Error('BENCH_PROJ_SRC=<ironclad.db> is required');
const limit = Number(process.env['BENCH_PROJ_EVENTS'] ?? 100_000);
const batchSize = Number(process.env['BENCH_PROJ_BATCH'] ?? 64);
const rounds = Number(process.env['BENCH_PROJ_ROUNDS'] ?? 3);

const from = new Database(src, { readonly: true });
const events = (from.prepare('SELECT * FROM events ORDER BY position LIMIT ?').all(limit) as Record<string, any>[]).map((r): StoredEvent => ({
  id: r['id'], stream: r['stream'], revision: r['revision'], type: r['type'], data: JSON.parse(r['data']),
  metadata: JSON.parse(r['metadata']), position: String(r['position']), time: r['time'],
}));
from.close();
const nodeStates = new Map<string, NodeState>();
const stackStates = new Map<string, StackState>();
for (const e of events) {
  const id = e.stream.slice(e.stream.indexOf('-') + 1);
  if (e.stream.startsWith('node-')) {
    const s = evolveNode(nodeStates.get(id) ?? initialNodeState(id), e);
    nodeStates.set(id, s);
    handOverFolded(e, s);
  } else if (e.stream.startsWith('stack-')) {
    const s = evolveStack(stackStates.get(id) ?? initialStackState(id), e);
    stackStates.set(id, s);
    handOverFolded(e, s);
  }
}
const copies = events.map((e) => ({ ...e }));

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet };

async function run(input: StoredEvent[]): Promise<string> {
  const dir = tempDataDir();
  const db = new Database(join(dir, 'rm.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('wal_autocheckpoint = 0'); // the WAL's size at the end = everything the run wrote
  createReadModelSchema(db);
  let handler: ((batch: StoredEvent[]) => unknown) | null = null;
  const store = {
    headPosition: async () => null,
    subscribeAll: (_after: string | null, h: (batch: StoredEvent[]) => unknown) => {
      handler = h;
      return { close: async () => {} };
    },
  } as unknown as EventStore;
  const projector = createProjector({ store, db, nodes: createNodesReadModel(db), tasks: createTasksReadModel(db), stacks: createStacksReadModel(db), log: quiet });
  await projector.start();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < input.length; i += batchSize) handler!(input.slice(i, i + batchSize));
  const cpu = process.cpuUsage(cpu0);
  const wal = statSync(join(dir, 'rm.db-wal')).size;
  await projector.close();
  db.close();
  removeDir(dir);
  return `${((cpu.user + cpu.system) / input.length).toFixed(2)} µs CPU, ${Math.round(wal / input.length)} WAL bytes per event`;
}

console.log(`projector A/B: ${events.length} events (${nodeStates.size} nodes, ${stackStates.size} stacks), batches of ${batchSize}`);
const variants = [
  { name: 'folded (copies)', input: copies },
  { name: 'handed (actor states)', input: events },
];
for (let round = 0; round < rounds; round++) {
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
    console.log(`${v.name.padEnd(22)} ${await run(v.input)}`);
  }
}
