/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and ranks where the time went: self time per function,
 * inclusive time of Ironclad's own functions, and self time per area (a package, SQLite, HTTP...).
 * Time is counted in samples (each ≈ the sampling interval of the thread's own running time), so
 * a process that was waiting for a core does not inflate whatever ran next.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Ranked {
  name: string;
  pct: number;
}

export interface ProfileSummary {
  samples: number;
  idle_pct: number;
  self: Ranked[];
  inclusive: Ranked[];
  areas: Ranked[];
}

const shortUrl = (url: string): string =>
  url.replace(/^file:\/\//, '').replace(/.*node_modules\//, '').replace(/.*\/dist\//, '');

export const frameName = (cf: CallFrame): string =>
  `${cf.functionName || '(anonymous)'}${cf.url ? ` ${shortUrl(cf.url)}:${cf.lineNumber + 1}` : ''}`;

/** Buckets a frame into an area of the stack, for the "where does a command's CPU go" table. */
export function areaOf(cf: CallFrame): string {
  const u = cf.url;
  if (!u) {
    if (cf.functionName === '(garbage collector)') return 'GC';
    if (cf.functionName === '(idle)') return 'idle';
    if (cf.functionName === '(program)') return 'V8/native (program)';
    if (/^(writev|writeBuffer|writeUtf8String|read|close)$/.test(cf.functionName)) return 'node: sockets (native)';
    return `native: ${cf.functionName}`;
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return nm[1] === 'better-sqlite3' ? 'SQLite (better-sqlite3, incl. native)' : `pkg: ${nm[1]}`;
  if (u.startsWith('node:')) return /http|net|stream|_http/.test(u) ? 'node: http/net/streams' : `node: ${u.slice(5).split('/').pop()}`;
  const src = /\/dist\/(src|machines|bench)\/(.*)\.js$/.exec(u);
  if (src) return `ironclad: ${src[1]}/${src[2]!.split('/').slice(0, 2).join('/')}`;
  return shortUrl(u);
}

/** Monotonic clock in µs, the clock of the profile's timestamps (CLOCK_MONOTONIC on Linux). */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** `window` (monotonic µs) keeps only the samples taken inside it, e.g. the load phase. */
export function summarizeProfile(path: string, top = 25, window?: { fromUs: number; toUs: number }): ProfileSummary {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  if (window) {
    let t = p.startTime;
    const kept: number[] = [];
    p.samples.forEach((s, i) => {
      t += p.timeDeltas[i] ?? 0;
      if (t >= window.fromUs && t <= window.toUs) kept.push(s);
    });
    p.samples = kept;
  }
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const hits = new Map<number, number>();
  for (const s of p.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
  const total = p.samples.length;
  const self = new Map<string, number>();
  const areas = new Map<string, number>();
  const incl = new Map<string, number>();
  let idle = 0;
  for (const [id, n] of hits) {
    const node = byId.get(id)!;
    if (node.callFrame.functionName === '(idle)') idle += n;
    const name = frameName(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + n);
    const area = areaOf(node.callFrame);
    areas.set(area, (areas.get(area) ?? 0) + n);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)!.callFrame;
      if (!/\/dist\/(src|machines)\//.test(cf.url)) continue;
      const k = frameName(cf);
      if (seen.has(k)) continue;
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + n);
    }
  }
  const busy = Math.max(1, total - idle);
  const rank = (m: Map<string, number>, denom: number): Ranked[] =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, n]) => ({ name, pct: Math.round((1000 * n) / denom) / 10 }));
  areas.delete('idle');
  self.delete('(idle)');
  return {
    samples: total,
    idle_pct: Math.round((1000 * idle) / Math.max(1, total)) / 10,
    self: rank(self, busy),
    inclusive: rank(incl, busy),
    areas: rank(areas, busy),
  };
}
