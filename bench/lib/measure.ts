/**
 * One measured open-loop run against a running server, with everything recorded around it:
 * accept latency (HDR), status counts, server CPU µs per accepted command (/proc/<pid>/stat),
 * generator CPU, server event-loop delay (probe), peak RSS, and how busy the rest of the machine was.
 */
import type Database from 'better-sqlite3';
import type { Client } from './client.js';
import type { LatencySummary } from './hdr.js';
import { runLoad, type OpenResult, type OpenRun, type Phase, type PhaseResult } from './loadgen.js';
import { NoiseMeter } from './machine.js';
import type { ProbeReading, Server } from './server.js';

export const OBJECTIVE_P99_MS = 20;

export interface Ctx {
  quick: boolean;
  server: Server;
  client: Client;
  db: Database.Database;
  log: (line: string) => void;
}

export interface RunRecord {
  label: string;
  dist: 'uniform' | 'zipf';
  nodes: number;
  rate: number;
  duration_s: number;
  tag: string;
  from_position: number;
  scheduled: number;
  accepted: number;
  coalesced: number;
  achieved_per_s: number;
  status: Record<string, number>;
  latency: LatencySummary;
  pass: boolean;
  server_cpu_us_per_cmd: number;
  gen_cpu_us_per_cmd: number;
  server_eld_ms: ProbeReading['eld_ms'] | null;
  server_heap_mb: number | null;
  server_rss_max_mb: number;
  gen_late_sends: number;
  machine: { other_cores: number; load1: number };
  phases?: PhaseResult[];
  lag?: LatencySummary;
  lag_errors?: Record<string, number>;
}

let runNo = 0;
const headOf = (db: Database.Database): number => (db.prepare('SELECT coalesce(max(position), 0) AS p FROM events').get() as { p: number }).p;

export interface MeasureOptions {
  label: string;
  nodes: string[];
  dist: 'uniform' | 'zipf';
  /** One phase (rate, duration), or several back to back (overload then recovery). */
  phases: Phase[];
  lag?: boolean;
  abortBacklogS?: number;
  connections?: number;
}

export async function measure(ctx: Ctx, o: MeasureOptions): Promise<RunRecord> {
  const { server } = ctx;
  const tag = `b${process.pid}r${++runNo}`;
  const fromPosition = headOf(ctx.db);
  await server.probe('reset');
  const cpu0 = server.cpuUs();
  const self0 = process.cpuUsage();
  const noise = new NoiseMeter();
  noise.start();
  let rssMax = server.rssMb();
  const sampler = setInterval(() => (rssMax = Math.max(rssMax, server.rssMb())), 250);
  const spec: OpenRun = {
    mode: 'open', baseUrl: server.baseUrl, nodes: o.nodes, phases: o.phases, dist: o.dist, connections: o.connections ?? 64, tag,
    ...(o.lag ? { lag: true } : {}), ...(o.abortBacklogS ? { abortBacklogS: o.abortBacklogS } : {}), seed: runNo,
  };
  let res: OpenResult;
  try {
    res = await runLoad<OpenResult>(spec);
  } finally {
    clearInterval(sampler);
  }
  const serverCpu = server.cpuUs() - cpu0;
  const self = process.cpuUsage(self0);
  const machine = noise.stop(serverCpu + res.gen.cpu_us + self.user + self.system);
  const reading = await server.probe('read');
  const first = res.phases[0]!;
  const accepted = res.phases.reduce((n, p) => n + p.accepted, 0);
  const scheduled = res.phases.reduce((n, p) => n + p.scheduled, 0);
  const status: Record<string, number> = {};
  for (const p of res.phases) for (const [k, v] of Object.entries(p.status)) status[k] = (status[k] ?? 0) + v;
  const errors = scheduled - (status['202'] ?? 0);
  const rec: RunRecord = {
    label: o.label, dist: o.dist, nodes: o.nodes.length, rate: first.rate, duration_s: res.phases.reduce((n, p) => n + p.durationS, 0),
    tag, from_position: fromPosition, scheduled, accepted, coalesced: res.phases.reduce((n, p) => n + p.coalesced, 0),
    achieved_per_s: first.achieved_per_s, status, latency: first.latency,
    pass: first.latency.p99 < OBJECTIVE_P99_MS && errors === 0,
    server_cpu_us_per_cmd: Math.round(serverCpu / Math.max(1, accepted)),
    gen_cpu_us_per_cmd: Math.round(res.gen.cpu_us / Math.max(1, accepted)),
    server_eld_ms: reading?.eld_ms ?? null,
    server_heap_mb: reading ? Math.round(reading.heap_used_mb) : null,
    server_rss_max_mb: Math.round(rssMax),
    gen_late_sends: res.gen.late_sends,
    machine,
    ...(res.phases.length > 1 ? { phases: res.phases.map((p) => ({ ...p, hist: '' })) } : {}),
    ...(res.lag ? { lag: res.lag, lag_errors: res.lagErrors } : {}),
  };
  const l = rec.latency;
  ctx.log(`  ${o.label.padEnd(22)} ${o.dist.padEnd(7)} ${String(rec.rate).padStart(6)}/s → ${String(rec.achieved_per_s).padStart(6)}/s accepted` +
    `  p50 ${l.p50} p99 ${l.p99} max ${l.max} ms  ${rec.server_cpu_us_per_cmd} µs/cmd  ${errors ? `non-202 ${JSON.stringify(status)} ` : ''}` +
    `${rec.pass ? 'PASS' : 'fail'}  (others: ${machine.other_cores} cores, load ${machine.load1})`);
  return rec;
}

/** Seconds from the start of phase `index` until every later second's p99 is under the objective. */
export function recoverySeconds(phases: PhaseResult[], index: number): number | null {
  const tl = phases[index]?.timeline ?? [];
  if (tl.length === 0) return null;
  const first = tl[0]!.s;
  for (let k = 0; k < tl.length; k++) {
    if (tl.slice(k).every((x) => x.accepted > 0 && x.p99 < OBJECTIVE_P99_MS)) return tl[k]!.s - first;
  }
  return null;
}

/** Seconds from the start of phase `index` until the first second whose p99 is under `ms` (the queue is gone). */
export function firstSecondUnder(phases: PhaseResult[], index: number, ms: number): number | null {
  const tl = phases[index]?.timeline ?? [];
  const hit = tl.find((x) => x.accepted > 0 && x.p99 < ms);
  return hit ? hit.s - tl[0]!.s : null;
}
