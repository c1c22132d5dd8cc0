/**
 * Preloaded into the server under test (`node --import dist/bench/lib/probe.js ... serve`) by the
 * bench only. Ironclad exposes no metrics endpoint yet, so the event-loop delay is read here with
 * perf_hooks.monitorEventLoopDelay (5 ms resolution, subtracted from every sample) and sent to the bench over the IPC channel on
 * request: {probe: 'reset'} clears the histogram, {probe: 'read'} answers with a reading.
 * Without an IPC channel (a normal start) it does nothing.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

if (typeof process.send === 'function') {
  const RESOLUTION_MS = 5;
  const h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  h.enable();
  // The histogram records the time between the timer's ticks, resolution included: subtract it.
  const ms = (ns: number): number => Math.max(0, Math.round(ns / 1e4 - RESOLUTION_MS * 100) / 100);
  process.on('message', (m: { probe?: string }) => {
    if (m?.probe === 'reset') {
      h.reset();
      process.send?.({ probe: 'reset', reading: null });
    } else if (m?.probe === 'read') {
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      process.send?.({
        probe: 'read',
        reading: {
          eld_ms: { mean: ms(h.mean || 0), p50: ms(h.percentile(50) || 0), p99: ms(h.percentile(99) || 0), max: ms(h.max || 0), count: h.count },
          heap_used_mb: mem.heapUsed / 2 ** 20,
          rss_mb: mem.rss / 2 ** 20,
          cpu_user_us: cpu.user,
          cpu_system_us: cpu.system,
        },
      });
    }
  });
  // The channel must not keep the process alive on its own (the service decides when to exit).
  process.channel?.unref();
}
