/**
 * Scenario 7: stacks. Time from `POST /v1/stacks` until its task is terminal (long-polled) for
 * 200 resources of the zero-delay `ironclad::test::resource` type in three shapes: independent,
 * a wide fan-in (200 depending on one) and a deep chain (each on the one before). What is measured
 * is the engine (stack actor, scheduler, workers, log), not a driver.
 */
import type { Ctx } from '../lib/measure.js';

type Shape = 'independent' | 'fan_in' | 'chain';

function template(shape: Shape, n: number): Record<string, unknown> {
  const resources: Record<string, unknown> = {};
  if (shape === 'fan_in') resources['root'] = { type: 'ironclad::test::resource', properties: { value: 'root' } };
  for (let i = 0; i < n; i++) {
    const depends_on = shape === 'fan_in' ? ['root'] : shape === 'chain' && i > 0 ? [`r${i - 1}`] : undefined;
    resources[`r${i}`] = { type: 'ironclad::test::resource', properties: { value: i }, ...(depends_on ? { depends_on } : {}) };
  }
  return { resources };
}

export interface StackRun {
  shape: Shape;
  resources: number;
  ms: number;
  state: string;
  events: number;
}

export async function stacks(ctx: Ctx, n = 200): Promise<StackRun[]> {
  const out: StackRun[] = [];
  for (const shape of ['independent', 'fan_in', 'chain'] as Shape[]) {
    const t0 = performance.now();
    const r = await ctx.client.req('POST', '/v1/stacks', { name: `bench-${shape}-${Date.now()}`, template: template(shape, n) });
    if (r.status !== 202 && r.status !== 200) throw new Error(`create stack (${shape}): ${r.status} ${JSON.stringify(r.json)}`);
    const state = await ctx.client.awaitTask({ task: r.json.task.id as string, position: String(r.headers['ironclad-position'] ?? '') }, 600_000);
    const ms = performance.now() - t0;
    const stackId = r.json.stack.id as string;
    const events = (ctx.db.prepare('SELECT count(*) AS n FROM events WHERE stream = ?').get(`stack-${stackId}`) as { n: number }).n;
    const resources = shape === 'fan_in' ? n + 1 : n;
    ctx.log(`  stack ${shape.padEnd(11)} ${resources} resources → ${state} in ${Math.round(ms)} ms (${events} events in its stream)`);
    out.push({ shape, resources, ms: Math.round(ms), state, events });
  }
  return out;
}
