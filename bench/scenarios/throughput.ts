/**
 * Scenario 1: throughput at the latency objective. Over the fleet's nodes, power on/off
 * alternation (on_busy "queue": accepted whatever the node is doing; identical active tasks
 * coalesce), open loop. Search: double the rate while p99 < 20 ms with every answer a 202, then
 * bisect; a miss while other processes kept > 0.5 core busy is tried once more (shared machine).
 * Then the latency curve at 25..100 % of the found rate, correctness of those runs (accepted =
 * appended = projected, ordering), and overload at 2× (of the found rate or of the highest rate
 * the server kept up with, whichever is higher) followed by recovery at half the found rate.
 */
import { integrity, settle } from '../lib/sqlite-check.js';
import { firstSecondUnder, measure, recoverySeconds, type Ctx, type RunRecord } from '../lib/measure.js';

export interface SearchResult {
  dist: 'uniform' | 'zipf';
  found_per_s: number;
  trials: RunRecord[];
}

const round = (r: number): number => (r >= 1000 ? Math.round(r / 50) * 50 : r >= 100 ? Math.round(r / 10) * 10 : Math.max(1, Math.round(r)));

/** A failed trial during which other processes kept more than this many cores busy is run once more. */
const NOISY_CORES = 0.5;

export async function searchRate(ctx: Ctx, nodes: string[], dist: 'uniform' | 'zipf', start: number, bisections: number): Promise<SearchResult> {
  const seconds = ctx.quick ? 3 : 10;
  const trials: RunRecord[] = [];
  const trial = async (rate: number): Promise<boolean> => {
    for (let attempt = 1; ; attempt++) {
      const r = await measure(ctx, { label: attempt === 1 ? 'search' : 'search (again)', nodes, dist, phases: [{ label: 'search', rate, durationS: seconds }], abortBacklogS: 2 });
      trials.push(r);
      await new Promise((res) => setTimeout(res, 1000)); // let the work plane finish behind the run
      // This machine is shared: a miss while others were busy gets one more chance.
      if (r.pass || attempt >= 2 || r.machine.other_cores <= NOISY_CORES) return r.pass;
    }
  };
  let lo = 0;
  let hi = Infinity;
  let rate = start;
  while (hi === Infinity && rate <= 64_000) {
    if (await trial(rate)) {
      lo = rate;
      rate *= 2;
    } else {
      hi = rate;
    }
  }
  if (lo === 0 && hi !== Infinity) {
    // Even the first step missed the objective: try lower before bisecting.
    for (rate = round(start / 4); rate >= 10; rate = round(rate / 4)) {
      if (await trial(rate)) {
        lo = rate;
        break;
      }
      hi = rate;
    }
  }
  for (let k = 0; k < bisections && lo > 0 && hi !== Infinity; k++) {
    const mid = round((lo + hi) / 2);
    if (mid <= lo || mid >= hi) break;
    if (await trial(mid)) lo = mid;
    else hi = mid;
  }
  ctx.log(`  → ${dist}: highest rate with p99 < 20 ms: ${lo}/s`);
  return { dist, found_per_s: lo, trials };
}

export interface ThroughputResult {
  nodes: number;
  warmup: RunRecord;
  uniform: SearchResult;
  zipf: SearchResult;
  curve: { pct: number; run: RunRecord }[];
  correctness: {
    runs: number;
    accepted_202: number;
    appended_commands: number;
    created: number;
    coalesced: number;
    projected_tasks: number;
    unfinished_tasks: number;
    ok: boolean;
  };
  overload: {
    rate: number;
    /** The highest trial rate the server kept up with (the overload is 2× the higher of it and the found rate). */
    kept_up_per_s: number;
    run: RunRecord;
    shed_429: number;
    shed_503: number;
    rss_before_mb: number;
    rss_max_mb: number;
    recovery_rate: number;
    /** First second of the recovery phase after which every second's p99 is under 20 ms. */
    recovered_after_s: number | null;
    /** First second of the recovery phase whose p99 is under 100 ms (the queued backlog is gone). */
    backlog_drained_after_s: number | null;
    /** p99 (ms) of each second of the recovery phase. */
    recovery_p99_by_second: number[];
    /** Seconds of the recovery phase, after the backlog was gone, whose p99 was 20 ms or more. */
    seconds_over_objective_after_drain: number;
  };
  integrity: ReturnType<typeof integrity>;
}

export async function throughput(ctx: Ctx, nodes: string[]): Promise<ThroughputResult> {
  ctx.log(`(1) throughput at p99 < 20 ms over ${nodes.length} nodes`);
  // A fresh server compiles the power path on its first commands: warm it up before any trial counts.
  const warmup = await measure(ctx, { label: 'warm-up (not counted)', nodes, dist: 'uniform', phases: [{ label: 'warm-up', rate: 200, durationS: ctx.quick ? 2 : 5 }] });
  const uniform = await searchRate(ctx, nodes, 'uniform', ctx.quick ? 400 : 250, ctx.quick ? 1 : 3);
  const zipf = await searchRate(ctx, nodes, 'zipf', Math.max(50, round((uniform.found_per_s || 400) / 2)), ctx.quick ? 1 : 2);
  const found = uniform.found_per_s || 100;
  const pcts = ctx.quick ? [50, 100] : [25, 50, 75, 90, 100];
  const curve: { pct: number; run: RunRecord }[] = [];
  ctx.log(`  latency curve (uniform) at ${pcts.join('/')} % of ${found}/s`);
  for (const pct of pcts) {
    const rate = Math.max(10, round((found * pct) / 100));
    curve.push({ pct, run: await measure(ctx, { label: `curve ${pct}%`, nodes, dist: 'uniform', phases: [{ label: `${pct}%`, rate, durationS: ctx.quick ? 3 : 10 }] }) });
  }

  // Every 202 of the curve runs must be in the log (one TaskCreated or TaskCoalesced with its
  // request id) and every created task in the read model, finished.
  const correctness = { runs: curve.length, accepted_202: 0, appended_commands: 0, created: 0, coalesced: 0, projected_tasks: 0, unfinished_tasks: 0, ok: false };
  for (const { run } of curve) {
    const c = await settle(ctx.db, run.from_position, run.tag);
    correctness.accepted_202 += run.accepted;
    correctness.appended_commands += c.appended_commands;
    correctness.created += c.created;
    correctness.coalesced += c.coalesced;
    correctness.projected_tasks += c.projected_tasks;
    correctness.unfinished_tasks += c.unfinished_tasks;
  }
  correctness.ok = correctness.accepted_202 === correctness.appended_commands && correctness.projected_tasks === correctness.created && correctness.unfinished_tasks === 0;
  ctx.log(`  correctness: 202s ${correctness.accepted_202} = appended ${correctness.appended_commands} (created ${correctness.created}, coalesced ${correctness.coalesced}); ` +
    `projected tasks ${correctness.projected_tasks}, unfinished ${correctness.unfinished_tasks} → ${correctness.ok ? 'OK' : 'MISMATCH'}`);

  // 2× the found rate is no overload when the tail (not the throughput) decided it, as on a shared
  // machine: take 2× the higher of that and the highest rate the server kept up with (every answer
  // a 202, achieved ≥ 95 % of the rate, median under the objective), so the phase really overloads.
  const keptUp = [...uniform.trials, ...zipf.trials, ...curve.map((c) => c.run)]
    .filter((r) => r.accepted === r.scheduled && r.achieved_per_s >= 0.95 * r.rate && r.latency.p50 < 20)
    .reduce((m, r) => Math.max(m, r.rate), 0);
  const overRate = round(Math.max(found, keptUp) * 2);
  const recoveryRate = round(found / 2);
  const rssBefore = ctx.server.rssMb();
  ctx.log(`  overload: ${overRate}/s (2 × max(found ${found}/s, kept up with ${keptUp}/s)) for ${ctx.quick ? 3 : 10} s, then ${recoveryRate}/s`);
  const run = await measure(ctx, {
    label: 'overload 2x → 0.5x', nodes, dist: 'uniform',
    phases: [{ label: 'overload', rate: overRate, durationS: ctx.quick ? 3 : 10 }, { label: 'recovery', rate: recoveryRate, durationS: ctx.quick ? 6 : 30 }],
  });
  const over = run.phases![0]!;
  const recovered = recoverySeconds(run.phases!, 1);
  const overload = {
    rate: overRate, kept_up_per_s: keptUp, run, shed_429: over.status['429'] ?? 0, shed_503: over.status['503'] ?? 0,
    rss_before_mb: Math.round(rssBefore), rss_max_mb: run.server_rss_max_mb, recovery_rate: recoveryRate, recovered_after_s: recovered,
    backlog_drained_after_s: firstSecondUnder(run.phases!, 1, 100), recovery_p99_by_second: run.phases![1]!.timeline.map((x) => x.p99),
    seconds_over_objective_after_drain: 0,
  };
  const drained = overload.backlog_drained_after_s;
  if (drained !== null) overload.seconds_over_objective_after_drain = overload.recovery_p99_by_second.slice(drained).filter((p) => !(p < 20)).length;
  ctx.log(`  overload: 429 ${overload.shed_429}, 503 ${overload.shed_503}, overload p99 ${over.latency.p99} ms; RSS ${overload.rss_before_mb} → max ${overload.rss_max_mb} MB; ` +
    `recovery phase: backlog gone (p99 < 100 ms) after ${drained ?? 'never'} s, then ${overload.seconds_over_objective_after_drain} s with p99 ≥ 20 ms, ` +
    `every later second under 20 ms ${recovered === null ? 'never' : `from ${recovered} s`}; p99 by second: ${overload.recovery_p99_by_second.slice(0, 12).map(Math.round).join(' ')} ...`);
  await settle(ctx.db, run.from_position, run.tag);
  const integ = integrity(ctx.db);
  ctx.log(`  integrity: ${integ.events} events in ${integ.streams} streams; ordering violations ${integ.ordering_violations}, bad starts ${integ.bad_starts}, ` +
    `read model behind ${integ.read_model_behind}; checkpoint ${integ.checkpoint} / head ${integ.head}`);
  return { nodes: nodes.length, warmup, uniform, zipf, curve, correctness, overload, integrity: integ };
}
