/**
 * The stack decider under a simulated worker pool (test/support/stack-sim.ts): workers carry out
 * the work orders in a random order per seed, with duplicate reports. Whatever the order, the
 * stack must converge to the newest template (docs/stacks.md "What must be shown").
 */
import { describe, expect, it } from 'vitest';
import type { StackCommand } from '../../src/domain/stack/commands.js';
import { stackView } from '../../src/domain/stack/view.js';
import { givenStack } from '../support/stack-given.js';
import { createSim, expectConverged, tpl, type Sim } from '../support/stack-sim.js';

const SEEDS = Array.from({ length: 12 }, (_, i) => i + 1);
const each = it.each(SEEDS);

const linear = tpl({ a: { value: 'a' }, b: { value: { get_resource: 'a' } }, c: { value: { get_attr: ['b', 'output'] } } }, { c: { get_attr: ['c', 'output'] } });
const diamond = tpl({ a: {}, b: { value: { get_resource: 'a' } }, c: { value: { get_resource: 'a' } }, d: { depends_on: ['b', 'c'] } });
const disjoint = tpl({ a: {}, b: { depends_on: ['a'] }, x: {}, y: { value: { get_resource: 'x' } } });

/** `[earlier, later]` must hold in the workers' log for the given action. */
function expectOrder(sim: Sim, action: string, pairs: [string, string][]): void {
  const at = (name: string) => sim.log.findIndex((l) => l.action === action && l.name === name && l.ok);
  for (const [x, y] of pairs) expect(at(x), `${action} ${x} before ${y}`).toBeLessThan(at(y));
}

const lastTask = (sim: Sim, id: string) => sim.events.filter((e) => e.type === 'TaskFinished' && e.data.task_id === id).at(-1)?.data;

describe('create and delete, under any worker order', () => {
  each('linear, diamond and disjoint graphs are created in dependency order and deleted in reverse (seed %i)', (seed) => {
    for (const [template, deps] of [
      [linear, [['a', 'b'], ['b', 'c']]], [diamond, [['a', 'b'], ['a', 'c'], ['b', 'd'], ['c', 'd']]], [disjoint, [['a', 'b'], ['x', 'y']]],
    ] as const) {
      const sim = createSim({ seed });
      sim.create(template);
      sim.run();
      expectConverged(sim, template, 'CREATE_COMPLETE');
      expectOrder(sim, 'CREATE', deps.map(([x, y]) => [x, y]));
      sim.remove();
      sim.run();
      expect(sim.state.status).toBe('DELETE_COMPLETE');
      expect(sim.state.deleted).toBe(true);
      expect(sim.world.size).toBe(0);
      expect(sim.state.records).toEqual({});
      expectOrder(sim, 'DELETE', deps.map(([x, y]) => [y, x]));
      expect(sim.replay()).toEqual(sim.state);
    }
  });

  it('computes outputs when complete and finishes the task', () => {
    const sim = createSim();
    const d = sim.create(linear);
    expect(d.events.map((e) => e.type)).toEqual(['StackCreateRequested', 'TaskCreated', 'TraversalStarted', 'ResourceActionStarted']);
    sim.run();
    // c's output is c's value = b's output = b's value = a's physical id.
    expect(sim.state.outputs).toEqual({ c: sim.byName('a')[0]!.physical_id });
    expect(lastTask(sim, 'task-1')).toEqual({ task_id: 'task-1', state: 'succeeded', error: null });
    expect(stackView(sim.state)).toMatchObject({ status: 'CREATE_COMPLETE', status_reason: 'Stack CREATE completed successfully', name: 'web' });
  });

  it('an empty template completes at once', () => {
    const sim = createSim();
    sim.create(tpl({}));
    expect(sim.state.status).toBe('CREATE_COMPLETE');
  });

  it('200 resources depending on one converge, and delete leaves the root last', () => {
    const wide = tpl({ root: { value: 'r' }, ...Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`leaf${i}`, { value: { get_attr: ['root', 'output'] } }])) });
    const started = performance.now();
    const sim = createSim({ seed: 3, duplicateRate: 0 });
    sim.create(wide);
    expect(sim.pending()).toHaveLength(1);
    sim.step();
    expect(sim.pending()).toHaveLength(200);
    sim.run();
    expectConverged(sim, wide, 'CREATE_COMPLETE');
    sim.remove();
    sim.run();
    expect(sim.log.at(-1)).toMatchObject({ action: 'DELETE', name: 'root' });
    expect(sim.state.status).toBe('DELETE_COMPLETE');
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});

describe('update', () => {
  const base = tpl({ a: { value: 1, replace_key: 1 }, b: { value: { get_resource: 'a' } }, c: { value: 'c' } });

  each('in place keeps physical ids; a replacement changes them, deleting the old one after its dependents moved (seed %i)', (seed) => {
    const sim = createSim({ seed });
    sim.create(base);
    sim.run();
    const before = Object.fromEntries(['a', 'b', 'c'].map((n) => [n, sim.physicalIdOf(n)]));
    const inPlace = tpl({ a: { value: 2, replace_key: 1 }, b: { value: { get_resource: 'a' } }, c: { value: 'c2' } });
    sim.update(inPlace);
    sim.run();
    expectConverged(sim, inPlace, 'UPDATE_COMPLETE');
    for (const n of ['a', 'b', 'c']) expect(sim.physicalIdOf(n)).toBe(before[n]);
    const replaced = tpl({ a: { value: 2, replace_key: 2 }, b: { value: { get_resource: 'a' } }, c: { value: 'c2' } });
    sim.update(replaced);
    sim.run();
    expectConverged(sim, replaced, 'UPDATE_COMPLETE');
    expect(sim.physicalIdOf('a')).not.toBe(before['a']);
    expect(sim.physicalIdOf('b')).toBe(before['b']); // re-pointed in place
    const oldDeleted = sim.log.findIndex((l) => l.action === 'DELETE' && l.physical_id === before['a']);
    const newCreated = sim.log.findIndex((l) => l.action === 'CREATE' && l.name === 'a' && l.physical_id !== before['a']);
    const bMoved = sim.log.findLastIndex((l) => l.action === 'UPDATE' && l.name === 'b');
    expect(newCreated).toBeLessThan(bMoved);
    expect(bMoved).toBeLessThan(oldDeleted);
    expect(sim.replay()).toEqual(sim.state);
  });

  it('keeps timeout_s and rollback_on_failure when an update does not give them', () => {
    const sim = createSim();
    sim.create(base, { timeout_s: 120, rollback_on_failure: true });
    sim.run();
    sim.update(tpl({ a: { value: 9, replace_key: 1 } }));
    expect(sim.state).toMatchObject({ timeout_s: 120, rollback_on_failure: true });
    sim.update(tpl({ a: { value: 8, replace_key: 1 } }), { rollback_on_failure: false });
    expect(sim.state).toMatchObject({ timeout_s: 120, rollback_on_failure: false });
  });

  it('coalesces an identical update while it runs', () => {
    const sim = createSim();
    sim.create(base);
    sim.run();
    const next = tpl({ a: { value: 5, replace_key: 1 } });
    sim.update(next);
    const again = sim.update(next);
    expect(again.result).toEqual({ task_id: 'task-2', coalesced: true, ignored: false });
    expect(again.events.map((e) => e.type)).toEqual(['TaskCoalesced']);
  });
});

describe('a newer traversal supersedes: update during create, update during update, delete during create', () => {
  const t1 = tpl({ a: { value: 1 }, b: { value: { get_resource: 'a' } }, c: { value: { get_attr: ['b', 'output'] } }, d: { replace_key: 1 } });
  const t2 = tpl({ a: { value: 2 }, b: { value: { get_resource: 'a' }, replace_key: 'x' }, e: { value: { get_resource: 'b' } }, d: { replace_key: 2 } });
  const t3 = tpl({ a: { value: 3 }, c: { value: { get_resource: 'a' } }, d: { replace_key: 1 } });

  each('update during create converges to the newest template (seed %i)', (seed) => {
    const sim = createSim({ seed });
    sim.create(t1);
    sim.runSome(Math.floor(sim.random() * 4)); // fewer reports than t1 has resources: still creating
    expect(sim.state.status).toBe('CREATE_IN_PROGRESS');
    sim.update(t2);
    expect(lastTask(sim, 'task-1')).toMatchObject({ state: 'cancelled', error: { code: 'cancelled' } });
    sim.run();
    expectConverged(sim, t2, 'UPDATE_COMPLETE');
    expect(lastTask(sim, 'task-2')).toMatchObject({ state: 'succeeded' });
    expect(sim.replay()).toEqual(sim.state);
  });

  each('update during update converges to the newest template (seed %i)', (seed) => {
    const sim = createSim({ seed });
    sim.create(t1);
    sim.run();
    sim.update(t2);
    sim.runSome(Math.floor(sim.random() * 8));
    sim.update(t3);
    sim.run();
    expectConverged(sim, t3, 'UPDATE_COMPLETE');
  });

  each('delete during create removes everything that was built (seed %i)', (seed) => {
    const sim = createSim({ seed });
    sim.create(t1);
    sim.runSome(Math.floor(sim.random() * 4));
    expect(sim.state.status).toBe('CREATE_IN_PROGRESS');
    sim.remove();
    sim.run();
    expect(sim.state.status).toBe('DELETE_COMPLETE');
    expect(sim.world.size).toBe(0);
    expect(sim.state.records).toEqual({});
  });

  it('update during update with hold_on: the held action finishes, then the newest template is applied', () => {
    const sim = createSim();
    sim.create(tpl({ a: { value: 1 }, b: { value: { get_resource: 'a' } } }));
    sim.run();
    sim.update(tpl({ a: { value: 2, hold_on: ['update'] }, b: { value: { get_resource: 'a' } } }));
    sim.run();
    expect(sim.byName('a')[0]).toMatchObject({ status: 'UPDATE_IN_PROGRESS', status_reason: 'Waiting for signal' });
    const newest = tpl({ a: { value: 3 }, b: { value: { get_resource: 'a' } } });
    sim.update(newest);
    sim.run();
    expect(sim.state.status).toBe('UPDATE_IN_PROGRESS'); // waits for the held record
    sim.signal('a');
    sim.run();
    expectConverged(sim, newest, 'UPDATE_COMPLETE');
  });

  it('delete during create with hold_on: the held create finishes, then it is deleted', () => {
    const sim = createSim();
    sim.create(tpl({ a: { hold_on: ['create'] }, b: { value: { get_resource: 'a' } } }));
    sim.run();
    sim.remove();
    sim.run();
    expect(sim.state.status).toBe('DELETE_IN_PROGRESS');
    // b was never built: discarded at once, still listed until the delete is complete.
    expect(sim.byName('b')[0]).toMatchObject({ status: 'DELETE_COMPLETE', status_reason: 'never built' });
    sim.signal('a');
    sim.run();
    expect(sim.state.status).toBe('DELETE_COMPLETE');
    expect(sim.world.size).toBe(0);
  });
});

describe('failure and rollback', () => {
  const t1 = tpl({ a: { value: 'a', replace_key: 1 }, b: { value: { get_resource: 'a' } }, c: { value: 'c' } });
  const bad = tpl({ a: { value: 'a', replace_key: 2 }, b: { value: { get_resource: 'a' } }, c: { value: 'c2' }, d: { fail_on: ['create'] } });

  each('failure without rollback: *_FAILED with the resource reason (seed %i)', (seed) => {
    const sim = createSim({ seed });
    sim.create(tpl({ a: {}, b: { fail_on: ['create'], value: { get_resource: 'a' } } }));
    sim.run();
    expect(sim.state.status).toBe('CREATE_FAILED');
    expect(sim.state.status_reason).toBe('Resource CREATE failed: resources.b: b refused to create');
    expect(sim.byName('b')[0]).toMatchObject({ status: 'CREATE_FAILED', status_reason: 'b refused to create' });
    expect(lastTask(sim, 'task-1')).toMatchObject({ state: 'failed', error: { code: 'resource_failed', message: sim.state.status_reason } });
    // An update fixing it replaces the failed record and converges.
    const fixed = tpl({ a: {}, b: { value: { get_resource: 'a' } } });
    sim.update(fixed);
    sim.run();
    expectConverged(sim, fixed, 'UPDATE_COMPLETE');
  });

  each('failure with rollback restores the original physical ids (seed %i)', (seed) => {
    const sim = createSim({ seed });
    sim.create(t1, { rollback_on_failure: true });
    sim.run();
    const original = Object.fromEntries(['a', 'b', 'c'].map((n) => [n, sim.physicalIdOf(n)]));
    sim.update(bad);
    sim.run();
    expectConverged(sim, t1, 'ROLLBACK_COMPLETE');
    for (const n of ['a', 'b', 'c']) expect(sim.physicalIdOf(n)).toBe(original[n]);
    expect(lastTask(sim, 'task-2')).toMatchObject({ state: 'failed', error: { code: 'resource_failed', message: 'Resource CREATE failed: resources.d: d refused to create' } });
    expect(sim.replay()).toEqual(sim.state);
  });

  it('a failed create rolls back to nothing', () => {
    const sim = createSim({ seed: 4 });
    sim.create(tpl({ a: {}, b: { fail_on: ['create'] } }), { rollback_on_failure: true });
    sim.run();
    expect(sim.state.status).toBe('ROLLBACK_COMPLETE');
    expect(sim.world.size).toBe(0);
  });

  it('a failed rollback ends ROLLBACK_FAILED and is not rolled back again', () => {
    const sim = createSim();
    sim.create(tpl({ a: {} }), { rollback_on_failure: true });
    sim.run();
    sim.update(tpl({ a: {}, x: { fail_on: ['create', 'delete'] } }));
    sim.run();
    expect(sim.state.status).toBe('ROLLBACK_FAILED');
    expect(sim.state.status_reason).toBe('Resource DELETE failed: resources.x: x refused to delete');
  });

  it('an explicit rollback after a failure without automatic rollback', () => {
    const sim = createSim();
    sim.create(t1);
    sim.run();
    const original = sim.physicalIdOf('a');
    sim.update(bad);
    sim.run();
    expect(sim.state.status).toBe('UPDATE_FAILED');
    sim.rollback();
    sim.run();
    expectConverged(sim, t1, 'ROLLBACK_COMPLETE');
    expect(sim.physicalIdOf('a')).toBe(original);
  });

  it('a failure of a superseded traversal is recorded and the newest one replaces the record', () => {
    const sim = createSim();
    sim.create(tpl({ a: { fail_on: ['create'], hold_on: ['create'] } }));
    sim.signal('a'); // before the worker: recorded, applied when it reports
    const fixed = tpl({ a: { value: 1 } });
    sim.update(fixed);
    sim.run();
    expectConverged(sim, fixed, 'UPDATE_COMPLETE');
    expect(sim.events.some((e) => e.type === 'TraversalFailed')).toBe(false);
  });
});

describe('cancel_update and timeout', () => {
  const t1 = tpl({ a: { value: 1 }, b: { value: { get_resource: 'a' } } });
  const held = tpl({ a: { value: 2, hold_on: ['update'] }, b: { value: { get_resource: 'a' } }, c: {} });

  function heldUpdate(rollback: boolean): Sim {
    const sim = createSim();
    sim.create(t1, { rollback_on_failure: rollback });
    sim.run();
    sim.update(held);
    sim.run();
    return sim;
  }

  it('without rollback: UPDATE_FAILED "Stack UPDATE cancelled"; in-flight actions finish, nothing new starts', () => {
    const sim = heldUpdate(false);
    sim.cancel();
    expect(sim.state).toMatchObject({ status: 'UPDATE_FAILED', status_reason: 'Stack UPDATE cancelled' });
    expect(lastTask(sim, 'task-2')).toMatchObject({ state: 'cancelled' });
    expect(lastTask(sim, 'task-3')).toMatchObject({ state: 'succeeded' });
    sim.signal('a');
    sim.run();
    expect(sim.byName('a')[0]!.status).toBe('UPDATE_COMPLETE');
    expect(sim.byName('b')[0]!.status).toBe('CREATE_COMPLETE'); // never re-pointed
    expect(sim.state.status).toBe('UPDATE_FAILED');
  });

  it('with rollback: back to the previous template', () => {
    const sim = heldUpdate(true);
    sim.cancel();
    expect(sim.state.status).toBe('ROLLBACK_IN_PROGRESS');
    sim.signal('a');
    sim.run();
    expectConverged(sim, t1, 'ROLLBACK_COMPLETE');
    expect(lastTask(sim, 'task-3')).toMatchObject({ state: 'succeeded' });
  });

  it('is refused when nothing runs', () => {
    const sim = createSim();
    sim.create(t1);
    sim.run();
    givenStack(sim.events).when({ type: 'CancelUpdate', task_id: 't', callback_url: null })
      .thenThrows('invalid_state', { current_state: 'CREATE_COMPLETE', allowed_actions: ['delete', 'update'] });
  });

  it('timeout fails the stack with "Timed out"; a stale or early expiry is ignored', () => {
    const sim = createSim();
    sim.create(tpl({ a: { hold_on: ['create'] } }), { timeout_s: 60 });
    sim.run();
    const t = sim.state.traversal!;
    expect(t.deadline_at).toBe(new Date(sim.now + 60_000).toISOString());
    const expire: StackCommand = { type: 'ExpireTimeout', traversal_id: t.id, deadline_at: t.deadline_at };
    expect(sim.exec(expire).result.ignored).toBe(true); // early
    sim.advanceClock(60_000);
    expect(sim.exec({ ...expire, traversal_id: 'other' }).result.ignored).toBe(true);
    sim.exec(expire);
    expect(sim.state).toMatchObject({ status: 'CREATE_FAILED', status_reason: 'Timed out' });
    expect(lastTask(sim, 'task-1')).toMatchObject({ state: 'failed', error: { code: 'deadline_expired', message: 'Timed out' } });
    expect(sim.exec(expire).result.ignored).toBe(true);
  });

  it('timeout with rollback rolls back', () => {
    const sim = createSim();
    sim.create(tpl({ a: {}, b: { hold_on: ['create'] } }), { timeout_s: 60, rollback_on_failure: true });
    sim.run();
    sim.advanceClock(60_000);
    const t = sim.state.traversal!;
    sim.exec({ type: 'ExpireTimeout', traversal_id: t.id, deadline_at: t.deadline_at });
    sim.signal('b');
    sim.run();
    expect(sim.state.status).toBe('ROLLBACK_COMPLETE');
    expect(sim.world.size).toBe(0);
  });
});
