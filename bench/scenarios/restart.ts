/**
 * Scenario 4, first half (rebuilding the read models from the log: a server started on a copy of
 * the log with no checkpoint, timed until /readyz) and scenario 6 (SIGKILL with deploys in flight, restart, time to
 * ready and until every interrupted deploy has succeeded). Both restart the real process on the
 * same data directory.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Client, mapLimit } from '../lib/client.js';
import type { Ctx } from '../lib/measure.js';
import { removeDir, startServer, tempDataDir } from '../lib/server.js';
import { integrity, openReadOnly } from '../lib/sqlite-check.js';

export interface ReplayResult {
  events: number;
  nodes: number;
  tasks: number;
  /** spawn → /readyz 200 with no checkpoint (every event projected again). */
  rebuild_ms: number;
  /** spawn → /readyz 200 again, checkpoint in place (the fixed cost of a start). */
  restart_ms: number;
  events_per_s: number;
  read_model_behind_after: number;
}

/**
 * Rebuilds the read models of a copy of the bench server's log (its first `limit` events, so the
 * run stays bounded): a fresh data directory holding only the events table, started as a user
 * would. No checkpoint there, so the projector replays every event before /readyz turns 200.
 */
export async function replay(ctx: Ctx, env: Record<string, string>, limit: number): Promise<ReplayResult> {
  const dataDir = tempDataDir();
  const dst = join(dataDir, 'ironclad.db');
  const rw = new Database(dst);
  rw.pragma('journal_mode = WAL');
  rw.exec((ctx.db.prepare("SELECT sql FROM sqlite_master WHERE name = 'events'").get() as { sql: string }).sql);
  rw.exec(`ATTACH DATABASE '${ctx.server.dbPath.replace(/'/g, "''")}' AS src`);
  rw.prepare('INSERT INTO events SELECT * FROM src.events ORDER BY position LIMIT ?').run(limit);
  rw.exec('DETACH DATABASE src');
  const events = (rw.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
  rw.close();
  ctx.log(`(4) replay: rebuild the read models from the first ${events} events of the log (a copy, no checkpoint)`);
  let server = await startServer({ dataDir, env });
  const rebuildMs = server.readyMs;
  const copy = openReadOnly(server.dbPath);
  const count = (sql: string): number => (copy.prepare(sql).get() as { n: number }).n;
  const nodes = count('SELECT count(*) AS n FROM rm_nodes');
  const tasks = count('SELECT count(*) AS n FROM rm_tasks');
  const behind = integrity(copy).read_model_behind;
  copy.close();
  await server.stop('SIGTERM');
  server = await startServer({ dataDir, env });
  const restartMs = server.readyMs;
  await server.stop('SIGTERM');
  removeDir(dataDir);
  const eps = Math.round(events / Math.max(0.001, (rebuildMs - restartMs) / 1000));
  ctx.log(`  rebuild ${Math.round(rebuildMs)} ms (${nodes} nodes, ${tasks} tasks); start with checkpoint ${Math.round(restartMs)} ms → ${eps} events/s net of the start; read model behind after: ${behind}`);
  return { events, nodes, tasks, rebuild_ms: Math.round(rebuildMs), restart_ms: Math.round(restartMs), events_per_s: eps, read_model_behind_after: behind };
}

export interface RecoveryResult {
  nodes: number;
  in_flight: number;
  deploy_ms: number;
  running_at_kill: number;
  finished_before_kill: number;
  /** spawn after SIGKILL → /readyz 200. */
  ready_ms: number;
  /** spawn after SIGKILL → the last interrupted deploy task answered "succeeded". */
  all_resumed_ms: number;
  /** all_resumed − ready − the fake deploy time (the steps run again from their start). */
  resume_overhead_ms: number;
  outcomes: Record<string, number>;
  /** Long-polls refused with 503 `overloaded` (load shedding) and retried after Retry-After (1 s). */
  shed_retries: number;
}

export async function recovery(ctx: Ctx, env: Record<string, string>, deployNodes: string[], deployMs: number): Promise<RecoveryResult> {
  const nodes = (ctx.db.prepare('SELECT count(*) AS n FROM rm_nodes WHERE deleted = 0').get() as { n: number }).n;
  ctx.log(`(6) recovery: ${nodes} nodes, ${deployNodes.length} deploys of ${deployMs} ms in flight, SIGKILL, restart`);
  const t0 = performance.now();
  await mapLimit(deployNodes, 64, (id) => ctx.client.drive(id, ['manage', 'provide']));
  ctx.log(`  ${deployNodes.length} nodes made available in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const accepted = await mapLimit(deployNodes, 64, (id) => ctx.client.provision(id, 'deploy'));
  // Wait until every deploy step is running (the read model shows its step), bounded.
  const ids = accepted.map((a) => a.task);
  const state = (): Record<string, number> => {
    const out: Record<string, number> = {};
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = ids.slice(i, i + 500);
      const rows = ctx.db.prepare(`SELECT state, count(*) AS n FROM rm_tasks WHERE id IN (${chunk.map(() => '?').join(',')}) GROUP BY state`).all(...chunk) as { state: string; n: number }[];
      for (const r of rows) out[r.state] = (out[r.state] ?? 0) + r.n;
    }
    return out;
  };
  const until = Date.now() + Math.min(10_000, deployMs / 2);
  while ((state()['running'] ?? 0) < ids.length && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  const before = state();
  await ctx.client.close();
  await ctx.server.stop('SIGKILL');
  const { dataDir } = ctx.server;
  const restart0 = performance.now();
  ctx.server = await startServer({ dataDir, env });
  const readyMs = ctx.server.readyMs;
  ctx.client = new Client(ctx.server.baseUrl, 256);
  const outcomes: Record<string, number> = {};
  let last = 0;
  await mapLimit(accepted, 1000, async (a) => {
    const s = await ctx.client.awaitTask(a, 300_000);
    outcomes[s] = (outcomes[s] ?? 0) + 1;
    last = Math.max(last, performance.now() - restart0);
  });
  const allMs = Math.round(last);
  const res: RecoveryResult = {
    nodes, in_flight: ids.length, deploy_ms: deployMs, running_at_kill: before['running'] ?? 0,
    finished_before_kill: (before['succeeded'] ?? 0) + (before['failed'] ?? 0), ready_ms: Math.round(readyMs), all_resumed_ms: allMs,
    resume_overhead_ms: Math.round(allMs - readyMs - deployMs), outcomes, shed_retries: ctx.client.shedRetries,
  };
  ctx.log(`  at kill: ${res.running_at_kill} running, ${res.finished_before_kill} finished; ready ${res.ready_ms} ms after restart; ` +
    `all ${ids.length} deploys done ${res.all_resumed_ms} ms after restart (${JSON.stringify(outcomes)}; overhead beyond the ${deployMs} ms deploy: ${res.resume_overhead_ms} ms; ${res.shed_retries} polls shed and retried)`);
  return res;
}
