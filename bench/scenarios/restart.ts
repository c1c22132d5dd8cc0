/**
 * Scenario 4, first half (rebuilding the read models from the log: stop, delete the checkpoint,
 * start, time until /readyz) and scenario 6 (SIGKILL with deploys in flight, restart, time to
 * ready and until every interrupted deploy has succeeded). Both restart the real process on the
 * same data directory.
 */
import Database from 'better-sqlite3';
import { Client, mapLimit } from '../lib/client.js';
import type { Ctx } from '../lib/measure.js';
import { startServer } from '../lib/server.js';
import { integrity } from '../lib/sqlite-check.js';

export interface ReplayResult {
  events: number;
  nodes: number;
  tasks: number;
  /** spawn → /readyz 200 with the checkpoint in place (the fixed cost of a start). */
  restart_ms: number;
  /** spawn → /readyz 200 with the checkpoint deleted (every event projected again). */
  rebuild_ms: number;
  events_per_s: number;
  read_model_behind_after: number;
}

export async function replay(ctx: Ctx, env: Record<string, string>): Promise<ReplayResult> {
  const { dataDir, dbPath } = ctx.server;
  const count = (sql: string): number => (ctx.db.prepare(sql).get() as { n: number }).n;
  const events = count('SELECT count(*) AS n FROM events');
  const nodes = count('SELECT count(*) AS n FROM rm_nodes');
  const tasks = count('SELECT count(*) AS n FROM rm_tasks');
  ctx.log(`(4) replay: rebuild the read models from ${events} events (${nodes} nodes, ${tasks} tasks)`);
  await ctx.server.stop('SIGTERM');
  ctx.server = await startServer({ dataDir, env });
  const restartMs = ctx.server.readyMs;
  await ctx.server.stop('SIGTERM');
  const rw = new Database(dbPath);
  rw.prepare("DELETE FROM rm_checkpoints WHERE name = 'read-models'").run();
  rw.close();
  ctx.server = await startServer({ dataDir, env });
  const rebuildMs = ctx.server.readyMs;
  await ctx.client.close();
  ctx.client = new Client(ctx.server.baseUrl);
  const behind = integrity(ctx.db).read_model_behind;
  const eps = Math.round(events / Math.max(0.001, (rebuildMs - restartMs) / 1000));
  ctx.log(`  start with checkpoint ${Math.round(restartMs)} ms; rebuild ${Math.round(rebuildMs)} ms → ${eps} events/s (net of the start); read model behind after: ${behind}`);
  return { events, nodes, tasks, restart_ms: Math.round(restartMs), rebuild_ms: Math.round(rebuildMs), events_per_s: eps, read_model_behind_after: behind };
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
    resume_overhead_ms: Math.round(allMs - readyMs - deployMs), outcomes,
  };
  ctx.log(`  at kill: ${res.running_at_kill} running, ${res.finished_before_kill} finished; ready ${res.ready_ms} ms after restart; ` +
    `all ${ids.length} deploys done ${res.all_resumed_ms} ms after restart (${JSON.stringify(outcomes)}; overhead beyond the ${deployMs} ms deploy: ${res.resume_overhead_ms} ms)`);
  return res;
}
