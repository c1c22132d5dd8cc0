/**
 * The readable side of the results: one table of the headline numbers beside the targets,
 * then the latency curve and the cost curve. The JSON file holds everything (see run.ts).
 */
import type { LatencySummary } from './hdr.js';

export interface Row {
  metric: string;
  measured: string;
  target: string;
  verdict: '' | 'met' | 'NOT met' | 'ok' | 'FAIL' | 'n/a';
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => pad(c, widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export const lat = (l: LatencySummary | undefined): string =>
  l && l.count > 0 ? `p50 ${l.p50} / p90 ${l.p90} / p99 ${l.p99} / p99.9 ${l.p999} / max ${l.max} ms` : 'no samples';

export const num = (n: number | null | undefined, unit = ''): string =>
  n === null || n === undefined || Number.isNaN(n) ? 'n/a' : `${Math.round(n).toLocaleString('en-US')}${unit}`;

export function verdict(ok: boolean | null): Row['verdict'] {
  return ok === null ? 'n/a' : ok ? 'met' : 'NOT met';
}

export function headline(rows: Row[]): string {
  return table(['metric', 'measured', 'target (issue 8)', ''], rows.map((r) => [r.metric, r.measured, r.target, r.verdict]));
}
