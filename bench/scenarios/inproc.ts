/**
 * Scenario 4, second half (cold actor load with and without snapshots) and scenario 5, first half
 * (heap per resident actor), measured in a forked process with --expose-gc (lib/inproc-worker.ts).
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import type { InprocSpec } from '../lib/inproc-worker.js';
import type { Ctx } from '../lib/measure.js';
import { REPO_ROOT } from '../lib/server.js';

function runInproc<T>(spec: InprocSpec): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(join(REPO_ROOT, 'dist', 'bench', 'lib', 'inproc-worker.js'), [], {
      execArgv: ['--expose-gc', '--max-old-space-size=8192'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let done = false;
    child.once('message', (m: { ok: boolean; result?: T; error?: string }) => {
      done = true;
      child.kill();
      if (m.ok) resolve(m.result!);
      else reject(new Error(`in-process bench: ${m.error}`));
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`in-process bench exited with ${code}`));
    });
    child.send(spec);
  });
}

export interface ColdLoadRow {
  target: number;
  events: number;
  generate_ms: number;
  with_snapshots: { median_ms: number; max_ms: number };
  without_snapshots: { median_ms: number; max_ms: number };
}

export interface MemoryRow {
  actors: number;
  resident: number;
  events_per_actor: number;
  state: string;
  bytes_per_actor: number;
  heap_delta_mb: number;
  load_all_ms: number;
  actors_loaded_per_s: number;
}

export async function coldLoad(ctx: Pick<Ctx, 'quick' | 'log'>): Promise<ColdLoadRow[]> {
  const sizes = ctx.quick ? [10, 1000] : [10, 1000, 10_000];
  ctx.log(`(4) cold actor load (in-process, SQLite store): streams of ${sizes.join(' / ')} events, with and without snapshots`);
  const rows = await runInproc<ColdLoadRow[]>({ mode: 'coldload', sizes, reps: ctx.quick ? 5 : 15 });
  for (const r of rows) {
    ctx.log(`  ${String(r.events).padStart(6)} events: with snapshots ${r.with_snapshots.median_ms} ms (max ${r.with_snapshots.max_ms}), ` +
      `without ${r.without_snapshots.median_ms} ms (max ${r.without_snapshots.max_ms})  [stream made in ${(r.generate_ms / 1000).toFixed(1)} s]`);
  }
  return rows;
}

export async function actorMemory(ctx: Pick<Ctx, 'quick' | 'log'>, counts: number[]): Promise<MemoryRow[]> {
  ctx.log(`(5) memory per resident actor (in-process): ${counts.join(' / ')} "available" nodes loaded into one runtime`);
  const rows = await runInproc<MemoryRow[]>({ mode: 'memory', counts });
  for (const r of rows) {
    ctx.log(`  ${r.actors} actors (${r.events_per_actor} events each, "${r.state}"): ${r.bytes_per_actor} bytes/actor ` +
      `(heap +${r.heap_delta_mb} MB); loaded in ${(r.load_all_ms / 1000).toFixed(1)} s (${r.actors_loaded_per_s}/s)`);
  }
  return rows;
}
