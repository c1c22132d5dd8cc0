/**
 * GET /metrics (Prometheus text format) with prom-client: process and event-loop metrics, HTTP
 * latency per route, and Ironclad's own gauges (backlog, projection position, actors, work).
 * A registry per server (not the global one) so several servers can live in one test process.
 */
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export interface MetricSources {
  pendingTasks(): number;
  projectedEvents(): number;
  projectionPosition(): string | null;
  cachedActors(): number;
  work(): { queued: number; running: number; completed: number };
  /** Partitions whose lease this process holds (embedded: all of them). */
  ownedPartitions?(): number;
}

export function registerMetrics(app: FastifyInstance, sources: MetricSources): void {
  const register = new Registry();
  collectDefaultMetrics({ register, eventLoopMonitoringPrecision: 10 });
  const http = new Histogram({
    name: 'ironclad_http_request_duration_seconds', help: 'HTTP request latency by route and status',
    labelNames: ['method', 'route', 'status'], registers: [register],
    buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60],
  });
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers: [register], collect() { this.set(read()); } });
  };
  gauge('ironclad_pending_tasks', 'Queued + running tasks (the backlog behind 503 overloaded)', sources.pendingTasks);
  gauge('ironclad_projected_events_total', 'Events applied to the read models by this process', sources.projectedEvents);
  gauge('ironclad_projection_position', 'Global log position the read models reached', () => Number(sources.projectionPosition() ?? 0));
  gauge('ironclad_actors_cached', 'Node actors resident in memory', sources.cachedActors);
  if (sources.ownedPartitions) gauge('ironclad_partitions_owned', 'Partitions whose lease this process holds (NATS mode)', sources.ownedPartitions);
  gauge('ironclad_work_running', 'Driver steps running in this process', () => sources.work().running);
  gauge('ironclad_work_queued', 'Driver steps waiting for a worker slot', () => sources.work().queued);
  gauge('ironclad_work_completed_total', 'Driver steps finished by this process', () => sources.work().completed);

  app.addHook('onResponse', async (req, reply) => {
    http.observe({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });
  app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
    reply.type(register.contentType);
    return register.metrics();
  });
}
