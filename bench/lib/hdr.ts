/** HDR histograms (hdr-histogram-js) of latencies recorded in microseconds, summarised in ms. */
import hdr from 'hdr-histogram-js';

export type Histogram = ReturnType<typeof hdr.build>;

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export function newHistogram(): Histogram {
  // 1 µs .. 10 min, 3 significant digits.
  return hdr.build({ bitBucketSize: 32, lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3, useWebAssembly: false });
}

/** Records a latency given in milliseconds (clamped into the trackable range). */
export function recordMs(h: Histogram, ms: number): void {
  h.recordValue(Math.min(600_000_000, Math.max(1, Math.round(ms * 1000))));
}

const r3 = (us: number): number => Math.round(us) / 1000;

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { count: 0, p50: NaN, p90: NaN, p99: NaN, p999: NaN, max: NaN, mean: NaN };
  return {
    count: h.totalCount,
    p50: r3(h.getValueAtPercentile(50)),
    p90: r3(h.getValueAtPercentile(90)),
    p99: r3(h.getValueAtPercentile(99)),
    p999: r3(h.getValueAtPercentile(99.9)),
    max: r3(h.maxValue),
    mean: r3(h.mean),
  };
}

export const encode = (h: Histogram): string => hdr.encodeIntoCompressedBase64(h);
export const decode = (b64: string): Histogram => hdr.decodeFromCompressedBase64(b64, 32, false) as Histogram;
