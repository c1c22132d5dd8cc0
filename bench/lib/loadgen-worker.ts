/**
 * The load generator process (forked by loadgen.ts). Open loop: request i of a phase is due at
 * start + i / rate whatever happened to earlier requests, and its latency is measured from that
 * due time, not from when it left (no coordinated omission: a stalled server is charged for the
 * queue it causes). Keep-alive connections through an undici Pool.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Pool } from 'undici';
import { encode, newHistogram, recordMs, summarize, type Histogram } from './hdr.js';
import type { GenStats, LifecycleResult, LifecycleRun, OpenResult, OpenRun, PhaseResult, RunSpec, SecondSample } from './loadgen.js';

const eld = monitorEventLoopDelay({ resolution: 5 });

/** mulberry32: a small seeded PRNG, so runs pick the same nodes. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Node index chooser: uniform, or Zipf(s) by rank (index 0 hottest) through a CDF. */
function chooser(n: number, dist: 'uniform' | 'zipf', s: number, rand: () => number): () => number {
  if (dist === 'uniform') return () => Math.floor(rand() * n);
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) cdf[k] = sum += 1 / Math.pow(k + 1, s);
  for (let k = 0; k < n; k++) cdf[k]! /= sum;
  return () => {
    const u = rand();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

const p99Of = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = Float64Array.from(xs).sort();
  return Math.round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]! * 1000) / 1000;
};

function genStats(t0: number, cpu0: NodeJS.CpuUsage, late: number): GenStats {
  const cpu = process.cpuUsage(cpu0);
  return {
    wall_ms: Math.round(performance.now() - t0), cpu_us: cpu.user + cpu.system,
    // monitorEventLoopDelay's samples include its 5 ms resolution: subtract it.
    eld_p99_ms: Math.max(0, Math.round(eld.percentile(99) / 1e4 - 500) / 100), eld_max_ms: Math.max(0, Math.round(eld.max / 1e4 - 500) / 100), late_sends: late,
  };
}

async function warm(pool: Pool, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, async () => (await pool.request({ method: 'GET', path: '/healthz' })).body.dump()));
}

async function runOpen(spec: OpenRun): Promise<OpenResult> {
  const pools = [spec.baseUrl, ...(spec.extraBaseUrls ?? [])].map((url) =>
    new Pool(url, { connections: spec.connections, pipelining: 1, keepAliveTimeout: 120_000, headersTimeout: 120_000, bodyTimeout: 120_000 }));
  const lagPool = spec.lag ? new Pool(spec.baseUrl, { connections: 32, pipelining: 1, keepAliveTimeout: 120_000 }) : null;
  for (const p of pools) await warm(p, spec.connections);
  if (lagPool) await warm(lagPool, 32);
  const rand = rng(spec.seed ?? 1);
  const pick = chooser(spec.nodes.length, spec.dist, spec.zipfS ?? 0.99, rand);
  const toggles = new Uint8Array(spec.nodes.length);
  const lagHist = newHistogram();
  const lagErrors: Record<string, number> = {};
  const results: PhaseResult[] = [];
  const hists: Histogram[] = [];
  const timeline = new Map<number, { sent: number; accepted: number; lat: number[] }>();
  let outstanding = 0;
  let late = 0;
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  eld.enable();
  eld.reset();
  const runStart = performance.now() + 20;
  let phaseStart = runStart;

  const follow = (id: string, position: string, t202: number): void => {
    outstanding++;
    lagPool!.request({ method: 'GET', path: `/v1/nodes/${id}`, headers: { 'ironclad-position': position } })
      .then(async (r) => {
        await r.body.dump();
        if (r.statusCode === 200) recordMs(lagHist, performance.now() - t202);
        else lagErrors[String(r.statusCode)] = (lagErrors[String(r.statusCode)] ?? 0) + 1;
      })
      .catch((e: Error & { code?: string }) => (lagErrors[e.code ?? 'error'] = (lagErrors[e.code ?? 'error'] ?? 0) + 1))
      .finally(() => outstanding--);
  };

  for (const [pi, phase] of spec.phases.entries()) {
    const hist: Histogram = newHistogram();
    const pr: PhaseResult = {
      label: phase.label, rate: phase.rate, durationS: phase.durationS, scheduled: Math.round(phase.rate * phase.durationS),
      status: {}, accepted: 0, coalesced: 0, achieved_per_s: 0, latency: summarize(hist), hist: '', timeline: [],
    };
    const t0 = phaseStart;
    const interval = 1000 / phase.rate;
    const bump = (k: string): void => void (pr.status[k] = (pr.status[k] ?? 0) + 1);
    const fire = (i: number, due: number): void => {
      const k = pick();
      const id = spec.nodes[k]!;
      toggles[k]! ^= 1;
      const sec = Math.floor((due - runStart) / 1000);
      let slot = timeline.get(sec);
      if (!slot) timeline.set(sec, (slot = { sent: 0, accepted: 0, lat: [] }));
      slot.sent++;
      outstanding++;
      pools[i % pools.length]!.request({
        method: 'PUT', path: `/v1/nodes/${id}/states/power`,
        headers: { 'content-type': 'application/json', 'x-request-id': `${spec.tag}-${pi}-${i}` },
        body: toggles[k] ? '{"target":"power on","on_busy":"queue"}' : '{"target":"power off","on_busy":"queue"}',
      }).then(async (r) => {
        const text = await r.body.text();
        const t = performance.now();
        bump(String(r.statusCode));
        if (r.statusCode !== 202) return;
        const lat = t - due;
        recordMs(hist, lat);
        slot!.accepted++;
        slot!.lat.push(lat);
        pr.accepted++;
        if (text.includes('"coalesced":true')) pr.coalesced++;
        const pos = r.headers['ironclad-position'];
        if (lagPool && typeof pos === 'string') follow(id, pos, t);
      }).catch((e: Error & { code?: string }) => bump(`error:${e.code ?? e.message}`))
        .finally(() => outstanding--);
    };
    await new Promise<void>((done) => {
      let i = 0;
      const tick = (): void => {
        const now = performance.now();
        while (i < pr.scheduled) {
          if (spec.abortBacklogS && outstanding > phase.rate * spec.abortBacklogS) {
            pr.status['not_sent_aborted'] = pr.scheduled - i; // hopeless: seconds of answers are owed already
            return done();
          }
          const due = t0 + i * interval;
          if (due > now) break;
          if (now - due > 5) late++;
          fire(i, due);
          i++;
        }
        if (i >= pr.scheduled) return done();
        setTimeout(tick, Math.max(0, t0 + i * interval - performance.now() - 0.5));
      };
      tick();
    });
    phaseStart = t0 + phase.durationS * 1000;
    results.push(pr);
    hists.push(hist); // summarised once the phase's answers are in
  }
  // Let the answers come in (bounded), then close the books.
  const drainUntil = performance.now() + 120_000;
  while (outstanding > 0 && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  for (const [pi, pr] of results.entries()) {
    pr.latency = summarize(hists[pi]!);
    pr.hist = encode(hists[pi]!);
    pr.achieved_per_s = Math.round(pr.accepted / pr.durationS);
    if (outstanding > 0) pr.status['unanswered_at_end'] = outstanding;
  }
  let offset = 0;
  for (const pr of results) {
    const first = Math.floor(offset);
    offset += pr.durationS;
    for (let s = first; s < Math.ceil(offset); s++) {
      const slot = timeline.get(s);
      if (slot) pr.timeline.push({ s, sent: slot.sent, accepted: slot.accepted, p99: p99Of(slot.lat) } satisfies SecondSample);
    }
  }
  const gen = genStats(wall0, cpu0, late);
  await Promise.all([...pools.map((p) => p.destroy()), lagPool?.destroy()]);
  return { mode: 'open', phases: results, ...(lagPool ? { lag: summarize(lagHist), lagErrors } : {}), gen };
}

let shedRetries = 0;

/** A closed-loop client's request: a 503 `overloaded` (shed before anything ran) is retried after its Retry-After. */
async function json(pool: Pool, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; position: string }> {
  for (let attempt = 0; ; attempt++) {
    const r = await jsonOnce(pool, method, path, body, headers);
    if (r.status !== 503 || r.json?.code !== 'overloaded' || attempt >= 120) return r;
    shedRetries++;
    await new Promise((res) => setTimeout(res, Math.min(5, Number(r.json?.retry_after_s ?? 1)) * 1000 * (0.5 + Math.random() / 2)));
  }
}

async function jsonOnce(pool: Pool, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any; position: string }> {
  const r = await pool.request({
    method: method as 'GET', path, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const text = await r.body.text();
  const pos = r.headers['ironclad-position'];
  return { status: r.statusCode, json: text ? JSON.parse(text) : null, position: typeof pos === 'string' ? pos : '' };
}

async function runLifecycle(spec: LifecycleRun): Promise<LifecycleResult> {
  const pool = new Pool(spec.baseUrl, { connections: spec.concurrency + 4, pipelining: 1, keepAliveTimeout: 120_000, headersTimeout: 120_000, bodyTimeout: 120_000 });
  const all = newHistogram();
  const perVerb: Record<string, Histogram> = {};
  const res: LifecycleResult = {
    mode: 'lifecycle', completed: 0, failed: 0, per_s: 0, latency: summarize(all), verbLatency: {}, readModelChecked: 0, readModelMismatch: 0, errors: [], gen: genStats(0, process.cpuUsage(), 0),
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  eld.enable();
  eld.reset();
  const end = t0 + spec.durationS * 1000;
  let seq = 0;
  let lastDone = t0;
  const one = async (): Promise<void> => {
    const start = performance.now();
    const name = `${spec.tag}-${seq++}`;
    const enrolled = await json(pool, 'POST', '/v1/nodes', { name, driver: 'fake', resource_class: 'baremetal', driver_info: spec.driverInfo });
    if (enrolled.status !== 201) throw new Error(`enroll ${enrolled.status} ${JSON.stringify(enrolled.json)}`);
    const id = enrolled.json.id as string;
    for (const verb of spec.verbs) {
      const v0 = performance.now();
      const put = await json(pool, 'PUT', `/v1/nodes/${id}/states/provision`, { target: verb });
      if (put.status !== 202) throw new Error(`${verb} ${put.status} ${JSON.stringify(put.json)}`);
      let state = put.json.state as string;
      while (state !== 'succeeded') {
        const got = await json(pool, 'GET', `/v1/tasks/${put.json.id}`, undefined, { prefer: 'wait=60', 'ironclad-position': put.position });
        state = got.json?.state;
        if (state === 'failed' || state === 'cancelled') throw new Error(`${verb} ${state}: ${JSON.stringify(got.json.error)}`);
      }
      recordMs((perVerb[verb] ??= newHistogram()), performance.now() - v0);
    }
    // The read model (the list is served from it, not from the actor) must show the end state.
    const listed = await json(pool, 'GET', `/v1/nodes?name=${encodeURIComponent(name)}`);
    res.readModelChecked++;
    if (listed.json?.items?.[0]?.provision_state !== 'available') res.readModelMismatch++;
    recordMs(all, performance.now() - start);
    res.completed++;
    lastDone = performance.now();
  };
  await Promise.all(Array.from({ length: spec.concurrency }, async () => {
    while (performance.now() < end) {
      try {
        await one();
      } catch (err) {
        res.failed++;
        if (res.errors.length < 5) res.errors.push(String((err as Error).message));
      }
    }
  }));
  res.per_s = Math.round((res.completed * 1000 * 10) / (lastDone - t0)) / 10;
  res.latency = summarize(all);
  for (const [v, h] of Object.entries(perVerb)) res.verbLatency[v] = summarize(h);
  res.gen = genStats(t0, cpu0, 0);
  res.shedRetries = shedRetries;
  await pool.destroy();
  return res;
}

process.once('message', (spec: RunSpec) => {
  // undici unrefs idle sockets and the IPC channel is unref'd once this listener is gone: keep
  // the process alive until the answer is sent (the parent then ends it).
  setInterval(() => undefined, 1000);
  const run = spec.mode === 'open' ? runOpen(spec) : runLifecycle(spec);
  run.then(
    (result) => process.send!({ ok: true, result }),
    (err: unknown) => process.send!({ ok: false, error: err instanceof Error ? err.stack : String(err) }),
  );
});
