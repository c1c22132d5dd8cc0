/**
 * A simulated stack actor with a simulated worker pool, for pure tests of convergence.
 *
 * `exec(command)` decides against the folded state (fixed clock, sequential ids) and keeps the
 * events, exactly as the runtime would. The "workers" carry out the work orders
 * (`ResourceActionStarted`) on a simulated world of physical test resources, one at a time, in
 * an order chosen by a seeded random generator — so a test can run the same scenario under many
 * schedules. Duplicate reports are sent now and then (work orders are at-least-once).
 *
 * The world checks the guarantees as it goes: one action per record at a time, and nothing is
 * deleted while a live resource still refers to it (create before delete, reverse order).
 */
import { expect } from 'vitest';
import type { StackEvent } from '../../machines/stack/stack.events.js';
import type { StackCommand, StackDecideContext } from '../../src/domain/stack/commands.js';
import { decideStack, type StackDecision } from '../../src/domain/stack/decide.js';
import { resolveReferences, type NodeOutput } from '../../src/domain/stack/graph.js';
import { evolveStack, initialStackState, type StackState } from '../../src/domain/stack/state.js';
import { pendingWorkOrders, type StackWorkOrder } from '../../src/domain/stack/work.js';
import { parseTemplate, type Template } from '../../src/domain/stack/template.js';

export const STACK_ID = 'stack-1';
export const T0 = Date.parse('2026-01-01T00:00:00.000Z');
export const TEST = 'ironclad::test::resource';

/** mulberry32: a tiny seeded PRNG (deterministic schedules per seed). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A template from a compact description: `{a: {value: 1}, b: {value: {get_resource: 'a'}}}`. */
export function tpl(resources: Record<string, Record<string, unknown>>, outputs: Record<string, unknown> = {}): Template {
  return parseTemplate({
    resources: Object.fromEntries(Object.entries(resources).map(([name, props]) => {
      const { depends_on, ...properties } = props as { depends_on?: string[] };
      return [name, { type: TEST, properties, ...(depends_on ? { depends_on } : {}) }];
    })),
    outputs: Object.fromEntries(Object.entries(outputs).map(([k, value]) => [k, { value }])),
  });
}

interface Physical {
  id: string;
  name: string;
  properties: Record<string, unknown>;
}

export interface SimOptions {
  seed?: number;
  /** Probability of re-sending a previous report after each step (default 0.2). */
  duplicateRate?: number;
}

export function createSim(opts: SimOptions = {}) {
  const random = rng(opts.seed ?? 1);
  const duplicateRate = opts.duplicateRate ?? 0.2;
  let state: StackState = initialStackState(STACK_ID);
  let now = T0;
  let ids = 0;
  let physicalIds = 0;
  let tasks = 0;
  const events: StackEvent[] = [];
  /** Every event with the time it was recorded at, for replay. */
  const history: { event: StackEvent; time: string }[] = [];
  const world = new Map<string, Physical>();
  const reported = new Set<string>();
  const reports: StackCommand[] = [];
  /** Every action a worker carried out, in order (for ordering assertions). */
  const log: { action: string; name: string; record_id: string; physical_id: string | null; ok: boolean }[] = [];

  const ctx = (): StackDecideContext => ({
    now, newId: () => `id-${++ids}`, principal: 'tester', idempotency_key: null, config: { defaultTimeoutS: 3600 },
  });

  function exec(command: StackCommand): StackDecision {
    const d = decideStack(command, state, ctx());
    checkOneActionPerRecord(state, d.events);
    events.push(...d.events);
    for (const event of d.events) history.push({ event, time: new Date(now).toISOString() });
    state = d.state;
    return d;
  }

  /** Work orders the workers have not carried out yet (dispatched at least once by the state). */
  const pending = (): StackWorkOrder[] => pendingWorkOrders(state).filter((o) => !reported.has(o.action_id));

  /** A worker carries out one work order (chosen at random among the pending ones) and reports. */
  function step(): boolean {
    const todo = pending();
    if (todo.length === 0) return false;
    const order = todo[Math.floor(random() * todo.length)]!;
    reported.add(order.action_id);
    const report = work(order);
    reports.push(report);
    exec(report);
    if (random() < duplicateRate) {
      const again = reports[Math.floor(random() * reports.length)]!;
      expect(exec(again).events, 'a duplicate report changes nothing').toEqual([]);
    }
    return true;
  }

  /** What a test-resource worker does, knowing only its work order. */
  function work(o: StackWorkOrder): StackCommand {
    const props = o.properties;
    const base = { type: 'ReportResourceOutcome' as const, traversal_id: o.traversal_id, action_id: o.action_id, record_id: o.record_id, phase: o.phase };
    const failOn = Array.isArray(props['fail_on']) ? props['fail_on'] : [];
    if (failOn.includes(o.action.toLowerCase())) {
      log.push({ action: o.action, name: o.name, record_id: o.record_id, physical_id: o.physical_id, ok: false });
      return { ...base, outcome: 'failed', outputs: null, error: { code: 'resource_error', message: `${o.name} refused to ${o.action.toLowerCase()}` } };
    }
    let physicalId = o.physical_id;
    if (o.action === 'CREATE') {
      physicalId = `phys-${++physicalIds}`;
      world.set(physicalId, { id: physicalId, name: o.name, properties: props });
    } else if (o.action === 'UPDATE') {
      world.set(physicalId!, { id: physicalId!, name: o.name, properties: props });
    } else if (physicalId !== null) {
      checkNothingRefersTo(physicalId);
      world.delete(physicalId);
    }
    log.push({ action: o.action, name: o.name, record_id: o.record_id, physical_id: physicalId, ok: true });
    const outputs = o.action === 'DELETE' ? null : { physical_id: physicalId, attributes: { output: props['value'] ?? null } };
    return { ...base, outcome: 'complete', outputs, error: null };
  }

  function checkNothingRefersTo(physicalId: string): void {
    for (const p of world.values()) {
      if (p.id === physicalId) continue;
      expect(JSON.stringify(p.properties), `${p.name} (${p.id}) still refers to ${physicalId} when it is deleted`).not.toContain(`"${physicalId}"`);
    }
  }

  /** Runs workers until nothing is pending (held actions wait for a signal). */
  function run(maxSteps = 10_000): void {
    for (let i = 0; i < maxSteps; i++) if (!step()) return;
    throw new Error('the simulation did not settle');
  }

  /** Runs `n` random steps at most. */
  function runSome(n: number): void {
    for (let i = 0; i < n && step(); i++);
  }

  /** Rebuilds the state by folding the recorded events (what replay and history do). */
  function replay(): StackState {
    let s = initialStackState(STACK_ID);
    for (const { event, time } of history) {
      s = evolveStack(s, { type: event.type, data: event.data as Record<string, unknown>, time, revision: s.revision + 1, position: null });
    }
    return s;
  }

  const task = () => ({ task_id: `task-${++tasks}`, callback_url: null });

  return {
    get state() { return state; },
    events, world, log, exec, step, run, runSome, pending, random, replay,
    advanceClock: (ms: number) => { now += ms; },
    get now() { return now; },
    create: (template: Template, o: { rollback_on_failure?: boolean; timeout_s?: number } = {}) =>
      exec({ type: 'Create', name: 'web', owner: 'acme', template, timeout_s: o.timeout_s ?? null, rollback_on_failure: o.rollback_on_failure ?? null, ...task() }),
    update: (template: Template, o: { rollback_on_failure?: boolean; timeout_s?: number } = {}) =>
      exec({ type: 'Update', template, timeout_s: o.timeout_s ?? null, rollback_on_failure: o.rollback_on_failure ?? null, ...task() }),
    remove: () => exec({ type: 'Delete', ...task() }),
    cancel: () => exec({ type: 'CancelUpdate', ...task() }),
    rollback: () => exec({ type: 'Rollback', ...task() }),
    signal: (name: string, status: 'complete' | 'fail' = 'complete', reason: string | null = null) => exec({ type: 'Signal', name, status, reason }),
    /** The live records by name (one each when converged). */
    byName: (name: string) => Object.values(state.records).filter((r) => r.name === name),
    physicalIdOf: (name: string) => {
      const rs = Object.values(state.records).filter((r) => r.name === name && r.status !== 'DELETE_COMPLETE');
      expect(rs, `one record named ${name}`).toHaveLength(1);
      return rs[0]!.physical_id;
    },
  };
}

export type Sim = ReturnType<typeof createSim>;

function checkOneActionPerRecord(before: StackState, events: readonly StackEvent[]): void {
  const busy = new Set(Object.values(before.records).filter((r) => r.action).map((r) => r.record_id));
  for (const e of events) {
    if (e.type === 'ResourceActionStarted') {
      expect(busy.has(e.data.record_id), `a second action on ${e.data.name} (${e.data.record_id})`).toBe(false);
      busy.add(e.data.record_id);
    } else if (e.type === 'ResourceActionCompleted' || e.type === 'ResourceActionFailed') busy.delete(e.data.record_id);
  }
}

/**
 * Asserts the stack converged to `template`: the expected status, exactly one healthy record per
 * resource built from the template's properties (references resolved), nothing in flight, and a
 * world holding exactly those physical resources.
 */
export function expectConverged(sim: Sim, template: Template, status: string): void {
  const s = sim.state;
  expect(s.status, s.status_reason ?? '').toBe(status);
  expect(sim.pending()).toEqual([]);
  const records = Object.values(s.records);
  expect(records.map((r) => r.name).sort()).toEqual(Object.keys(template.resources).sort());
  const outputs: Record<string, NodeOutput> = {};
  for (const r of records) {
    expect(r.status, `${r.name}: ${r.status_reason}`).toMatch(/^(CREATE|UPDATE)_COMPLETE$/);
    expect(r.action).toBeNull();
    outputs[r.name] = { record_id: r.record_id, physical_id: r.physical_id, attributes: r.attributes };
  }
  for (const r of records) {
    const want = resolveReferences(template.resources[r.name]!.properties, outputs);
    expect(r.properties, `${r.name} built from the template`).toEqual(want);
    expect(sim.world.get(r.physical_id!)?.properties, `${r.name} exists in the world as built`).toEqual(want);
  }
  expect([...sim.world.keys()].sort()).toEqual(records.map((r) => r.physical_id).sort());
}
