/**
 * In-process measurements (forked by scenarios/inproc.ts with --expose-gc), on Ironclad's own
 * modules from dist/: streams are produced through the real service (createIronclad, fake
 * driver with zero delays), then measured with createActorRuntime over the SQLite store.
 *   coldload: time to load one actor that is not in memory, for streams of ~10 / 1,000 / 10,000
 *             events, with the SQLite snapshot store (a snapshot every 100 events) and without.
 *   memory:   heap per resident actor: N copies of an "available" node's stream, all loaded.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config.js';
import { createIronclad } from '../../src/main.js';
import { openSqlite } from '../../src/adapters/sqlite/open.js';
import { createSqliteEventStore } from '../../src/adapters/sqlite/event-store.js';
import { createSqliteSnapshotStore } from '../../src/adapters/sqlite/snapshot-store.js';
import { createMemorySnapshotStore } from '../../src/adapters/memory/snapshot-store.js';
import { createSystemClock, createUuidIds } from '../../src/adapters/system/clock.js';
import { createActorRuntime } from '../../src/runtime/actor-runtime.js';
import { evolveNode, initialNodeState, type NodeState } from '../../src/domain/node/state.js';
import type { StoredEvent } from '../../src/ports/event-store.js';
import { fakeInfo } from './client.js';

export type InprocSpec = { mode: 'coldload'; sizes: number[]; reps: number } | { mode: 'memory'; counts: number[] };

const model = { entityType: 'node' as const, initial: initialNodeState, evolve: evolveNode, snapshotVersion: 1 };
const admin = { id: 'bench', tenant: 'default', role: 'admin' as const };
const meta = { request_id: null, idempotency_key: null };
const gc = (): void => {
  for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.();
};
const yieldNow = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A running in-process Ironclad on a temp dir, and helpers that drive one node through it. */
async function service(dir: string) {
  const config = parseConfig({ IRONCLAD_DATA_DIR: dir, IRONCLAD_LOG_LEVEL: 'error', IRONCLAD_POWER_SYNC_S: '0' });
  const ic = await createIronclad({ config });
  await ic.start();
  const nodes = ic.internals['nodes'] as any;
  const runtime = ic.internals['runtime'] as any;
  const idle = async (id: string): Promise<NodeState> => {
    for (;;) {
      const { state } = (await runtime.load(id)) as { state: NodeState };
      if (!state.op && state.queue.length === 0) return state;
      await yieldNow();
    }
  };
  return {
    ic,
    async enroll(): Promise<string> {
      const out = await nodes.enroll(admin, { name: null, driver: 'fake', driver_info: fakeInfo(), resource_class: 'baremetal', properties: {}, traits: [] }, meta);
      return out.state.id as string;
    },
    async power(id: string, on: boolean): Promise<NodeState> {
      await nodes.command(admin, id, { type: 'RequestPower', target: on ? 'power on' : 'power off', timeout_s: null, on_busy: 'queue', callback_url: null, task_id: randomUUID() }, meta);
      return idle(id);
    },
    async verb(id: string, verb: string): Promise<NodeState> {
      await nodes.command(admin, id, { type: 'RequestProvision', verb, params: {}, on_busy: 'queue', callback_url: null, task_id: randomUUID() }, meta);
      return idle(id);
    },
  };
}

async function coldload(sizes: number[], reps: number) {
  const dir = mkdtempSync(join(tmpdir(), 'ironclad-bench-cold-'));
  const svc = await service(dir);
  const streams: { target: number; id: string; events: number; gen_ms: number }[] = [];
  for (const target of sizes) {
    const t0 = performance.now();
    const id = await svc.enroll();
    let revision = 0;
    for (let on = true; revision + 1 < target; on = !on) revision = (await svc.power(id, on)).revision;
    streams.push({ target, id, events: revision + 1, gen_ms: Math.round(performance.now() - t0) });
  }
  await svc.ic.close();
  const db = openSqlite(join(dir, 'ironclad.db'));
  const store = createSqliteEventStore(db);
  const withSnapshots = createSqliteSnapshotStore(db);
  const out = [];
  for (const s of streams) {
    const row: Record<string, unknown> = { target: s.target, events: s.events, generate_ms: s.gen_ms };
    for (const [mode, snapshots] of [['with_snapshots', withSnapshots], ['without_snapshots', createMemorySnapshotStore()]] as const) {
      const times: number[] = [];
      for (let r = 0; r < reps + 2; r++) {
        const rt = createActorRuntime<NodeState>({ store, snapshots, clock: createSystemClock(), ids: createUuidIds(), model });
        const t0 = performance.now();
        await rt.load(s.id);
        const dt = performance.now() - t0;
        rt.close();
        if (r >= 2) times.push(dt); // the first two warm the JIT and SQLite's page cache
      }
      times.sort((a, b) => a - b);
      row[mode] = { median_ms: Math.round(times[Math.floor(times.length / 2)]! * 1000) / 1000, max_ms: Math.round(times[times.length - 1]! * 1000) / 1000 };
    }
    out.push(row);
  }
  await store.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return out;
}

async function memory(counts: number[]) {
  const dir = mkdtempSync(join(tmpdir(), 'ironclad-bench-mem-'));
  const svc = await service(dir);
  const id = await svc.enroll();
  await svc.verb(id, 'manage');
  const final = await svc.verb(id, 'provide');
  const template = (await svc.ic.store.readStream(`node-${id}`)) as StoredEvent[];
  await svc.ic.close();
  const out = [];
  for (const n of counts) {
    const path = join(dir, `mem-${n}.db`);
    const db = openSqlite(path);
    const store = createSqliteEventStore(db);
    const snapshots = createSqliteSnapshotStore(db);
    const insert = db.prepare('INSERT INTO events (id, stream, revision, type, data, metadata, time) VALUES (?, ?, ?, ?, ?, ?, ?)');
    const ids: string[] = Array.from({ length: n }, () => randomUUID());
    const copy = db.transaction((chunk: string[]) => {
      for (const nid of chunk) for (const e of template) insert.run(randomUUID(), `node-${nid}`, e.revision, e.type, JSON.stringify(e.data), JSON.stringify(e.metadata), e.time);
    });
    for (let i = 0; i < n; i += 5000) copy(ids.slice(i, i + 5000));
    gc();
    const heap0 = process.memoryUsage().heapUsed;
    const rt = createActorRuntime<NodeState>({ store, snapshots, clock: createSystemClock(), ids: createUuidIds(), model });
    const t0 = performance.now();
    for (const nid of ids) await rt.load(nid);
    const loadMs = performance.now() - t0;
    gc();
    const heap1 = process.memoryUsage().heapUsed;
    const resident = rt.cachedCount();
    out.push({
      actors: n, resident, events_per_actor: template.length, state: final.provision_state,
      bytes_per_actor: Math.round((heap1 - heap0) / n), heap_delta_mb: Math.round((heap1 - heap0) / 2 ** 20),
      load_all_ms: Math.round(loadMs), actors_loaded_per_s: Math.round((n * 1000) / loadMs),
    });
    rt.close();
    await store.close();
    db.close();
  }
  rmSync(dir, { recursive: true, force: true });
  return out;
}

process.once('message', (spec: InprocSpec) => {
  const run = spec.mode === 'coldload' ? coldload(spec.sizes, spec.reps) : memory(spec.counts);
  run.then(
    (result) => process.send!({ ok: true, result }),
    (err: unknown) => process.send!({ ok: false, error: err instanceof Error ? err.stack : String(err) }),
  );
});
