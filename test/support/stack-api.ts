/** Helpers for the stack API suites: compact templates and orderings read from a stack's history. */
import { expect } from 'vitest';
import type { Harness } from './harness.js';

export const TEST_TYPE = 'ironclad::test::resource';

/** `{a: {value: 1}, b: {depends_on: ['a'], value: {get_attr: ['a', 'output']}}}` → a template of test resources. */
export function testTemplate(resources: Record<string, Record<string, unknown>>, outputs: Record<string, unknown> = {}) {
  return {
    resources: Object.fromEntries(Object.entries(resources).map(([name, props]) => {
      const { depends_on, ...properties } = props as { depends_on?: string[] };
      return [name, { type: TEST_TYPE, properties, ...(depends_on ? { depends_on } : {}) }];
    })),
    ...(Object.keys(outputs).length ? { outputs: Object.fromEntries(Object.entries(outputs).map(([k, value]) => [k, { value }])) } : {}),
  };
}

export interface ActionStep {
  event: 'started' | 'completed' | 'failed';
  action: string;
  name: string;
  record_id: string;
  physical_id: string | null;
}

/** Every resource action of the stack, in log order, read through `GET /v1/stacks/{id}/history`. */
export async function actionLog(h: Harness, stackId: string, token?: string): Promise<ActionStep[]> {
  await h.settle();
  const r = await h.req({ method: 'GET', url: `/v1/stacks/${stackId}/history?limit=1000`, token });
  expect(r.statusCode, r.body).toBe(200);
  const started = new Map<string, { action: string; name: string; physical_id: string | null }>();
  const out: ActionStep[] = [];
  for (const e of r.json().items as { type: string; data: Record<string, any> }[]) {
    if (e.type === 'ResourceActionStarted') {
      started.set(e.data.action_id, { action: e.data.action, name: e.data.name, physical_id: e.data.physical_id });
      out.push({ event: 'started', action: e.data.action, name: e.data.name, record_id: e.data.record_id, physical_id: e.data.physical_id });
    } else if (e.type === 'ResourceActionCompleted' || e.type === 'ResourceActionFailed') {
      const s = started.get(e.data.action_id)!;
      out.push({
        event: e.type === 'ResourceActionCompleted' ? 'completed' : 'failed', action: s.action, name: s.name, record_id: e.data.record_id,
        physical_id: e.data.physical_id ?? s.physical_id,
      });
    }
  }
  return out;
}

/** Asserts that every `before` action of `first` completed before any `action` of `second` started. */
export function expectBefore(log: ActionStep[], action: string, first: string, second: string): void {
  const done = log.findIndex((s) => s.event === 'completed' && s.action === action && s.name === first);
  const start = log.findIndex((s) => s.event === 'started' && s.action === action && s.name === second);
  expect(done, `${action} ${first} completed`).toBeGreaterThanOrEqual(0);
  expect(start, `${action} ${second} started`).toBeGreaterThanOrEqual(0);
  expect(done, `${action} ${first} completes before ${action} ${second} starts`).toBeLessThan(start);
}

/** The physical ids of the stack's live resources by name. */
export function physicalIds(stack: Record<string, any>): Record<string, string> {
  return Object.fromEntries((stack['resources'] as { name: string; physical_id: string }[]).map((r) => [r.name, r.physical_id]));
}

/**
 * Harness env for the stack suites: load shedding off (these suites measure behaviour, not
 * capacity; a loaded CI machine must not turn a GET into a 503).
 */
export const STACK_ENV = { IRONCLAD_SHED_EVENT_LOOP_DELAY_MS: '0', IRONCLAD_SHED_EVENT_LOOP_UTILIZATION: '0' };
