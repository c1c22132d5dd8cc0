/**
 * Scenario 2 (full lifecycles/s, closed loop), scenario 3 (projection lag under open-loop load)
 * and the server half of scenario 5 (the cost curve: the same rate over 1k, then 10k nodes).
 */
import type { LatencySummary } from '../lib/hdr.js';
import { fakeInfo, mapLimit } from '../lib/client.js';
import { runLoad, type LifecycleResult } from '../lib/loadgen.js';
import { measure, type Ctx, type RunRecord } from '../lib/measure.js';

export interface LagResult {
  rate: number;
  run: RunRecord;
  /** 202 received → GET /v1/nodes/{id} with Ironclad-Position answered 200 (includes one GET round trip). */
  lag: LatencySummary | undefined;
  errors: Record<string, number> | undefined;
}

export async function projectionLag(ctx: Ctx, nodes: string[], rate: number): Promise<LagResult> {
  ctx.log(`(3) projection lag at ${rate}/s (uniform), each 202 followed by GET /v1/nodes/{id} with its Ironclad-Position`);
  const run = await measure(ctx, { label: 'lag', nodes, dist: 'uniform', phases: [{ label: 'lag', rate, durationS: ctx.quick ? 3 : 10 }], lag: true });
  ctx.log(`  lag p50 ${run.lag?.p50} p99 ${run.lag?.p99} max ${run.lag?.max} ms over ${run.lag?.count} reads; errors ${JSON.stringify(run.lag_errors)}`);
  return { rate, run, lag: run.lag, errors: run.lag_errors };
}

export interface LifecycleBench extends LifecycleResult {
  concurrency: number;
  duration_s: number;
  server_cpu_us_per_lifecycle: number;
}

export async function lifecycles(ctx: Ctx): Promise<LifecycleBench> {
  const concurrency = ctx.quick ? 8 : 32;
  const durationS = ctx.quick ? 5 : 20;
  ctx.log(`(2) full lifecycles: enroll → manage → provide → deploy → undeploy, zero-delay fake driver, ${concurrency} clients, ${durationS} s`);
  const cpu0 = ctx.server.cpuUs();
  const r = await runLoad<LifecycleResult>({
    mode: 'lifecycle', baseUrl: ctx.server.baseUrl, concurrency, durationS, verbs: ['manage', 'provide', 'deploy', 'undeploy'],
    driverInfo: fakeInfo(), tag: `lc${process.pid}`,
  });
  const cpu = ctx.server.cpuUs() - cpu0;
  const out = { ...r, concurrency, duration_s: durationS, server_cpu_us_per_lifecycle: Math.round(cpu / Math.max(1, r.completed)) };
  ctx.log(`  ${r.completed} lifecycles (${r.failed} failed) → ${r.per_s}/s; lifecycle p50 ${r.latency.p50} p99 ${r.latency.p99} ms; ` +
    `read model showed "available" for ${r.readModelChecked - r.readModelMismatch}/${r.readModelChecked}; ${out.server_cpu_us_per_lifecycle} µs CPU each${r.errors.length ? `; errors: ${r.errors.join(' | ')}` : ''}`);
  return out;
}

export interface CostPoint {
  nodes: number;
  enroll_ms: number;
  run: RunRecord;
}

/**
 * The same open-loop rate over a growing fleet: first over the nodes already there, then after
 * enrolling up to each size in `sizes` (new nodes stay in "enroll": power actions are accepted there).
 */
export async function costCurve(ctx: Ctx, nodes: string[], rate: number, sizes: number[], extraInfo: (i: number) => Record<string, unknown>): Promise<{ rate: number; points: CostPoint[]; nodes: string[] }> {
  ctx.log(`(5) cost curve: ${rate}/s uniform over ${[nodes.length, ...sizes].join(' → ')} nodes`);
  const all = [...nodes];
  const points: CostPoint[] = [];
  const seconds = ctx.quick ? 3 : 10;
  points.push({ nodes: all.length, enroll_ms: 0, run: await measure(ctx, { label: `${all.length} nodes`, nodes: all, dist: 'uniform', phases: [{ label: 'cost', rate, durationS: seconds }] }) });
  for (const size of sizes) {
    const t0 = performance.now();
    const more = await mapLimit(Array.from({ length: Math.max(0, size - all.length) }), 64, (_, i) => ctx.client.enroll(fakeInfo(extraInfo(all.length + i))));
    all.push(...more);
    const enrollMs = Math.round(performance.now() - t0);
    ctx.log(`  enrolled ${more.length} more nodes in ${(enrollMs / 1000).toFixed(1)} s (${Math.round((more.length * 1000) / Math.max(1, enrollMs))}/s)`);
    points.push({ nodes: all.length, enroll_ms: enrollMs, run: await measure(ctx, { label: `${all.length} nodes`, nodes: all, dist: 'uniform', phases: [{ label: 'cost', rate, durationS: seconds }] }) });
  }
  return { rate, points, nodes: all };
}
