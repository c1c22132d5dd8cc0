/**
 * The convergence graph (docs/stacks.md): node order for create, update, replacement and
 * delete; the best-existing-record rule; inputs and reference resolution. Pure functions.
 */
import { describe, expect, it } from 'vitest';
import {
  buildGraph, chooseRecord, inputsOf, isComplete, nodeKey, planCleanup, planUpdate, ready, resolveReferences,
  type Graph, type GraphRecord, type NodeOutput, type ResourceStatus,
} from '../../src/domain/stack/graph.js';
import { EMPTY_TEMPLATE, type Template } from '../../src/domain/stack/template.js';
import { rng, tpl } from '../support/stack-sim.js';

const up = (id: string) => nodeKey(id, 'update');
const clean = (id: string) => nodeKey(id, 'cleanup');

function ids(): () => string {
  let n = 0;
  return () => `r${++n}`;
}

/** An existing record; `requires` are record ids. */
function rec(id: string, name: string, o: Partial<GraphRecord> = {}): GraphRecord {
  return { record_id: id, name, type: 'ironclad::test::resource', template_id: 'T1', status: 'CREATE_COMPLETE', requires: [], replaces: null, seq: 0, ...o };
}

/** Reports ready nodes one at a time in a seeded random order; returns the order. */
function traverse(graph: Graph, seed: number): string[] {
  const random = rng(seed);
  const done: Record<string, true> = {};
  const order: string[] = [];
  while (!isComplete(graph, done)) {
    const r = ready(graph, done);
    expect(r.length, 'a graph that is not complete always has a ready node').toBeGreaterThan(0);
    const next = r[Math.floor(random() * r.length)]!;
    done[next.key] = true;
    order.push(next.key);
  }
  return order;
}

/** Asserts `before` came before `after` in every order. */
function expectBefore(orders: string[][], before: string, after: string): void {
  for (const o of orders) expect(o.indexOf(before), `${before} before ${after} in ${o.join(' ')}`).toBeLessThan(o.indexOf(after));
}

const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const orders = (g: Graph) => SEEDS.map((s) => traverse(g, s));

/** Create of `template`; returns the graph and name → record id. */
function createPlan(template: Template) {
  const plan = buildGraph({ template, template_id: 'T1', previous_template_id: null, records: [], newId: ids() });
  return { graph: plan.graph, id: (name: string) => plan.chosen[name]! };
}

/** Delete of records built from `template` (requires follow its dependencies). */
function deletePlan(edges: Record<string, string[]>) {
  const records = Object.entries(edges).map(([name, reqs], i) => rec(name, name, { requires: reqs, seq: i }));
  return buildGraph({ template: EMPTY_TEMPLATE, template_id: 'T2', previous_template_id: 'T1', records, newId: ids() }).graph;
}

describe('create and delete order', () => {
  it('linear: creates a, b, c in order and deletes c, b, a', () => {
    const { graph, id } = createPlan(tpl({ a: {}, b: { value: { get_resource: 'a' } }, c: { depends_on: ['b'] } }));
    expect(Object.values(graph.nodes).every((n) => n.phase === 'update')).toBe(true);
    for (const o of orders(graph)) expect(o).toEqual([up(id('a')), up(id('b')), up(id('c'))]);
    const del = deletePlan({ a: [], b: ['a'], c: ['b'] });
    expect(Object.values(del.nodes).every((n) => n.phase === 'cleanup')).toBe(true);
    for (const o of orders(del)) expect(o).toEqual([clean('c'), clean('b'), clean('a')]);
  });

  it('diamond: the top first and the bottom last, reversed on delete', () => {
    const { graph, id } = createPlan(tpl({
      a: {}, b: { value: { get_attr: ['a', 'output'] } }, c: { value: { get_resource: 'a' } }, d: { depends_on: ['b', 'c'] },
    }));
    const os = orders(graph);
    for (const [x, y] of [['a', 'b'], ['a', 'c'], ['b', 'd'], ['c', 'd']] as const) expectBefore(os, up(id(x)), up(id(y)));
    expect(new Set(os.map((o) => o.join()))).toContain([up(id('a')), up(id('c')), up(id('b')), up(id('d'))].join());
    const del = orders(deletePlan({ a: [], b: ['a'], c: ['a'], d: ['b', 'c'] }));
    for (const [x, y] of [['d', 'b'], ['d', 'c'], ['b', 'a'], ['c', 'a']] as const) expectBefore(del, clean(x), clean(y));
  });

  it('disjoint: both roots are ready at once and each chain keeps its order', () => {
    const { graph, id } = createPlan(tpl({ a: {}, b: { depends_on: ['a'] }, x: {}, y: { depends_on: ['x'] } }));
    expect(ready(graph, {}).map((n) => n.key)).toEqual([up(id('a')), up(id('x'))]);
    const os = orders(graph);
    expectBefore(os, up(id('a')), up(id('b')));
    expectBefore(os, up(id('x')), up(id('y')));
    expect(new Set(os.map((o) => o.indexOf(up(id('x'))) < o.indexOf(up(id('b'))))).size).toBe(2); // interleavings vary
  });

  it('an empty template over no records is complete at once', () => {
    const { graph } = createPlan(EMPTY_TEMPLATE);
    expect(isComplete(graph, {})).toBe(true);
    expect(ready(graph, {})).toEqual([]);
  });
});

describe('update and replacement', () => {
  // T1: a ← b (b built against a). T2 changes a.
  const records = [rec('A', 'a', { seq: 1 }), rec('B', 'b', { requires: ['A'], seq: 2 })];
  const plan = buildGraph({
    template: tpl({ a: { replace_key: 2 }, b: { value: { get_resource: 'a' } }, n: {} }), template_id: 'T2', previous_template_id: 'T1',
    records, newId: ids(),
  });
  const g = plan.graph;

  it('reuses the existing records and creates records only for new resources', () => {
    expect(plan.chosen).toEqual({ a: 'A', b: 'B', n: 'r1' });
    expect(plan.new_records).toEqual([{ record_id: 'r1', name: 'n', type: 'ironclad::test::resource' }]);
  });

  it('every existing record gets a cleanup node after its own update', () => {
    expect(Object.keys(g.nodes).sort()).toEqual([clean('A'), clean('B'), up('A'), up('B'), up('r1')].sort());
    expect(g.nodes[clean('B')]!.requires).toEqual([up('B')]);
  });

  it('cleans the old record only after its dependents moved, and after every update', () => {
    const os = orders(g);
    expectBefore(os, up('A'), up('B'));
    expectBefore(os, up('B'), clean('B'));
    expectBefore(os, clean('B'), clean('A'));
    for (const o of os) {
      const lastUpdate = Math.max(...[up('A'), up('B'), up('r1')].map((k) => o.indexOf(k)));
      expect(o.indexOf(clean('A'))).toBeGreaterThan(lastUpdate);
      expect(o.indexOf(clean('B'))).toBeGreaterThan(lastUpdate);
    }
  });

  it('a replaced record is cleaned after its replacement', () => {
    const g2 = buildGraph({
      template: tpl({ a: {} }), template_id: 'T3', previous_template_id: 'T2',
      records: [rec('A', 'a', { seq: 1 }), rec('A2', 'a', { template_id: 'T2', replaces: 'A', seq: 2 })], newId: ids(),
    }).graph;
    expect(g2.nodes[clean('A')]!.requires).toContain(clean('A2'));
  });

  it('never deadlocks on records that require each other (built under different templates)', () => {
    const g3 = buildGraph({
      template: EMPTY_TEMPLATE, template_id: 'T3', previous_template_id: 'T2',
      records: [rec('X', 'x', { requires: ['Y'] }), rec('Y', 'y', { requires: ['X'] })], newId: ids(),
    }).graph;
    expect(traverse(g3, 1)).toHaveLength(2);
  });
});

describe('best existing record', () => {
  const pick = (cands: GraphRecord[], def?: Parameters<typeof chooseRecord>[3]) => chooseRecord(cands, 'T3', 'T2', def)?.record_id ?? null;

  it('prefers the record built with the target template, then the previous one, then the newest', () => {
    expect(pick([rec('old', 'a', { template_id: 'T1', seq: 1 }), rec('tgt', 'a', { template_id: 'T3', seq: 0 }), rec('prev', 'a', { template_id: 'T2', seq: 2 })])).toBe('tgt');
    expect(pick([rec('old', 'a', { template_id: 'T1', seq: 3 }), rec('prev', 'a', { template_id: 'T2', seq: 2 })])).toBe('prev');
    expect(pick([rec('x', 'a', { template_id: 'T0', seq: 1 }), rec('y', 'a', { template_id: 'T1', seq: 2 })])).toBe('y');
  });

  it('never a failed record if another exists, but a failed one rather than none', () => {
    expect(pick([rec('f', 'a', { template_id: 'T3', status: 'CREATE_FAILED', seq: 5 }), rec('ok', 'a', { template_id: 'T1', seq: 1 })])).toBe('ok');
    expect(pick([rec('f', 'a', { status: 'UPDATE_FAILED' })])).toBe('f');
  });

  it('never a deleted record or one being deleted', () => {
    expect(pick([rec('d', 'a', { template_id: 'T3', status: 'DELETE_COMPLETE' }), rec('p', 'a', { template_id: 'T3', status: 'DELETE_IN_PROGRESS' })])).toBeNull();
  });

  it('counts a record built from the very same definition as built with the target', () => {
    const def = { type: 'ironclad::test::resource', properties: { value: 1 }, depends_on: [] };
    const same = rec('same', 'a', { template_id: 'T1', seq: 1, definition: def });
    const prev = rec('prev', 'a', { template_id: 'T2', seq: 2, definition: { ...def, properties: { value: 2 } } });
    expect(pick([same, prev], def)).toBe('same');
  });
});

describe('fan-out and fan-in', () => {
  const wide = tpl(Object.fromEntries([['root', {}], ...Array.from({ length: 200 }, (_, i) => [`leaf${i}`, { value: { get_attr: ['root', 'output'] } }])]));

  it('200 resources depending on one: the root first, then all 200 ready together; deleted leaves first', () => {
    const started = performance.now();
    const { graph, id } = createPlan(wide);
    expect(ready(graph, {}).map((n) => n.key)).toEqual([up(id('root'))]);
    expect(ready(graph, { [up(id('root'))]: true })).toHaveLength(200);
    for (const o of orders(graph)) expect(o[0]).toBe(up(id('root')));
    const del = deletePlan(Object.fromEntries([['root', []], ...Array.from({ length: 200 }, (_, i) => [`leaf${i}`, ['root']])]));
    expect(ready(del, {})).toHaveLength(200);
    for (const o of orders(del)) expect(o.at(-1)).toBe(clean('root'));
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('one resource depending on 200 waits for all of them', () => {
    const { graph, id } = createPlan(tpl({ ...Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`s${i}`, {}])), sink: { depends_on: Array.from({ length: 200 }, (_, i) => `s${i}`) } }));
    const done: Record<string, true> = {};
    for (let i = 0; i < 199; i++) done[up(id(`s${i}`))] = true;
    expect(ready(graph, done).map((n) => n.key)).toEqual([up(id('s199'))]);
    done[up(id('s199'))] = true;
    expect(ready(graph, done).map((n) => n.key)).toEqual([up(id('sink'))]);
  });
});

describe('inputs and references', () => {
  const outputs = {
    a: { record_id: 'A', physical_id: 'phys-a', attributes: { output: { ip: ['10.0.0.1'] } } },
    b: { record_id: 'B', physical_id: 'phys-b', attributes: { output: 'bee' } },
  };

  it('resolves references at any depth and leaves the input untouched', () => {
    const value = { x: [{ y: { get_resource: 'a' } }, { get_attr: ['b', 'output'] }], z: { get_attr: ['a', 'output', 'ip', 0] }, n: 1 };
    const before = structuredClone(value);
    expect(resolveReferences(value, outputs)).toEqual({ x: [{ y: 'phys-a' }, 'bee'], z: '10.0.0.1', n: 1 });
    expect(value).toEqual(before);
  });

  it('resolves what is unknown to null, as Heat does', () => {
    expect(resolveReferences([{ get_attr: ['a', 'nope'] }, { get_resource: 'ghost' }, { get_attr: ['a', 'output', 'ip', 9] }], outputs)).toEqual([null, null, null]);
  });

  it("passes a node its update predecessors' outputs, by name", () => {
    const { graph, id } = createPlan(tpl({ a: {}, b: {}, c: { depends_on: ['a', 'b'] } }));
    const byKey: Record<string, NodeOutput> = { [up(id('a'))]: outputs.a, [up(id('b'))]: outputs.b };
    expect(inputsOf(graph, up(id('c')), (k) => byKey[k] ?? null)).toEqual({ a: outputs.a, b: outputs.b });
  });
});

describe('what a node does', () => {
  const def = { type: 'ironclad::test::resource', properties: {}, depends_on: [] };
  const r = (status: ResourceStatus, properties: Record<string, unknown> | null = { value: 1 }) => ({ type: def.type, status, properties });

  it.each([
    ['a record never built is created', r('INIT_COMPLETE', null), { value: 1 }, 'create'],
    ['unchanged is a no-op', r('CREATE_COMPLETE'), { value: 1 }, 'noop'],
    ['a value change is in place', r('UPDATE_COMPLETE'), { value: 2 }, 'update'],
    ['a replace_key change replaces', r('CREATE_COMPLETE', { replace_key: 1 }), { replace_key: 2 }, 'replace'],
    ['update_replace makes any change a replacement', r('CREATE_COMPLETE'), { value: 2, update_replace: true }, 'replace'],
    ['a failed create is replaced', r('CREATE_FAILED'), { value: 1 }, 'replace'],
    ['a failed update is tried again in place', r('UPDATE_FAILED'), { value: 1 }, 'update'],
  ] as const)('%s', (_, record, resolved, plan) => {
    expect(planUpdate(record, def, resolved)).toBe(plan);
  });

  it('another type replaces; a bare-metal class or trait change replaces, max_attempts does not', () => {
    expect(planUpdate(r('CREATE_COMPLETE'), { ...def, type: 'ironclad::baremetal::server' }, { resource_class: 'x' })).toBe('replace');
    const server = { type: 'ironclad::baremetal::server', status: 'CREATE_COMPLETE' as const, properties: { resource_class: 'x', traits: ['A', 'B'] } };
    const sdef = { ...def, type: 'ironclad::baremetal::server' };
    expect(planUpdate(server, sdef, { resource_class: 'x', traits: ['B', 'A'], max_attempts: 5 })).toBe('update');
    expect(planUpdate(server, sdef, { resource_class: 'y', traits: ['A', 'B'] })).toBe('replace');
    expect(planUpdate(server, sdef, { resource_class: 'x', traits: ['A'] })).toBe('replace');
  });

  it('cleanup keeps current records, discards unbuilt ones and deletes the rest', () => {
    expect(planCleanup({ status: 'UPDATE_COMPLETE' }, true)).toBe('current');
    expect(planCleanup({ status: 'INIT_COMPLETE' }, false)).toBe('never_built');
    expect(planCleanup({ status: 'DELETE_COMPLETE' }, false)).toBe('already_deleted');
    expect(planCleanup({ status: 'CREATE_FAILED' }, false)).toBe('delete');
  });
});
