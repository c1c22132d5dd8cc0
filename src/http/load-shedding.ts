/**
 * Load shedding (@fastify/under-pressure): while the process is saturated — the event loop's mean
 * delay or its utilization over the last sample above the configured limits, or the heap above its
 * limit — every write (POST, PUT, PATCH, DELETE) is refused at once with 503 `overloaded` and
 * Retry-After, before authentication, parsing or any store work. Refusing costs a few
 * microseconds; admitting would queue the command behind the ones already waiting, so without it
 * an overload turns into seconds of latency for everyone (docs/performance.md). Reads are not
 * shed: they do no work beyond a read-model lookup (long-polls wait without CPU), and refusing the
 * polls of tasks that are finishing would only delay their clients by a Retry-After (measured: a
 * restart resuming 1,000 deploys had 912 polls shed, and its clients saw the last deploy finish
 * 1.8 s after the deploys' own 5 s instead of 0.9 s).
 * Floods of reads are the rate limit's job. The readings are taken every `sampleIntervalMs`, so a
 * decision holds for at least one sample.
 */
import underPressure from '@fastify/under-pressure';
import type { FastifyInstance } from 'fastify';
import { IroncladError } from '../domain/errors.js';

export interface LoadSheddingOptions {
  /** Mean event-loop delay (ms, beyond the 10 ms sampling resolution) above which requests are shed; 0 = off. */
  maxEventLoopDelayMs: number;
  /** Event-loop utilization (0–1) over the last sample above which requests are shed; 0 = off. */
  maxEventLoopUtilization: number;
  /** Heap used (MB) above which requests are shed; 0 = off. */
  maxHeapMb: number;
  sampleIntervalMs: number;
  retryAfterS: number;
  /** Other requests never shed (operational endpoints): they must answer most when the process is busy. */
  exempt: (url: string) => boolean;
}

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

const WHAT: Record<string, string> = {
  eventLoopDelay: 'event-loop delay', eventLoopUtilization: 'event-loop utilization', heapUsedBytes: 'heap used',
};

const shown = (type: string, value: number | undefined): string =>
  value === undefined ? '' : type === 'eventLoopUtilization' ? ` ${value.toFixed(2)}` : type === 'heapUsedBytes' ? ` ${Math.round(value / 1048576)} MB` : ` ${value.toFixed(1)} ms`;

/** Registers the shedder on the root instance (its onRequest hook then runs for every route). No-op when every limit is 0. */
export async function registerLoadShedding(app: FastifyInstance, o: LoadSheddingOptions): Promise<void> {
  if (o.maxEventLoopDelayMs <= 0 && o.maxEventLoopUtilization <= 0 && o.maxHeapMb <= 0) return;
  await app.register(underPressure, {
    maxEventLoopDelay: o.maxEventLoopDelayMs,
    maxEventLoopUtilization: o.maxEventLoopUtilization,
    eventLoopUtilizationMode: 'interval',
    maxHeapUsedBytes: o.maxHeapMb * 1048576,
    sampleInterval: o.sampleIntervalMs,
    // A rejected promise goes to the server's error handler: one problem mapping, Retry-After from retry_after_s.
    pressureHandler: async (req, _reply, type, value) => {
      if (READS.has(req.method) || o.exempt(req.url)) return;
      throw new IroncladError('overloaded', `The server is saturated (${WHAT[type] ?? type}${shown(type, value)}); retry in ${o.retryAfterS} s.`, {
        retry_after_s: o.retryAfterS, pressure: type,
      });
    },
  });
}
