/**
 * The stack decider command by command, given/when/then: the events each records, refusals,
 * stale or duplicate reports, signals, tasks, and what the state asks of the world (work orders
 * and the deadline to arm). Histories come from the simulator, so they are real decisions.
 */
import { describe, expect, it } from 'vitest';
import type { StackCommand } from '../../src/domain/stack/commands.js';
import { stackView } from '../../src/domain/stack/view.js';
import { pendingDeadline, pendingWorkOrders } from '../../src/domain/stack/work.js';
import { givenStack } from '../support/stack-given.js';
import { createSim, tpl } from '../support/stack-sim.js';

const noTask = { task_id: 't', callback_url: null };

describe('recorded events', () => {
  it('create records the task, the stack, the traversal and the first work orders', () => {
    const d = givenStack([]).when({
      type: 'Create', name: 'web', owner: 'acme', template: tpl({ a: {}, b: { depends_on: ['a'] }, x: {} }), timeout_s: 30, rollback_on_failure: null, ...noTask,
    }).then([
      { type: 'StackCreateRequested', data: { name: 'web', owner: 'acme' } },
      { type: 'TaskCreated', data: { task_id: 't', action: 'create', kind: 'stack', params: { timeout_s: 30, rollback_on_failure: false }, queued: false } },
      { type: 'TraversalStarted', data: { action: 'CREATE', previous_template: null, timeout_s: 30, task_id: 't', deadline_at: '2026-01-01T00:01:30.000Z' } },
      { type: 'ResourceActionStarted', data: { name: 'a', action: 'CREATE', phase: 'update', physical_id: null, hold: false } },
      { type: 'ResourceActionStarted', data: { name: 'x', action: 'CREATE' } },
    ]);
    expect(d.state.status).toBe('CREATE_IN_PROGRESS');
    expect(d.result).toEqual({ task_id: 't', coalesced: false, ignored: false });
    expect(d.state.tasks['t']).toMatchObject({ owner: 'acme', resource_type: 'stack', state: 'running' });
    expect(pendingWorkOrders(d.state).map((o) => o.name)).toEqual(['a', 'x']);
    expect(pendingDeadline(d.state)).toEqual({ traversal_id: d.state.traversal!.id, deadline_at: '2026-01-01T00:01:30.000Z' });
  });

  it('delete starts with the leaves, and the stack is DELETE_COMPLETE once the last record is gone', () => {
    const sim = createSim();
    sim.create(tpl({ a: {}, b: { value: { get_resource: 'a' } } }));
    sim.run();
    givenStack(sim.events).when({ type: 'Delete', ...noTask }).then([
      { type: 'TaskCreated', data: { action: 'delete' } },
      { type: 'TraversalStarted', data: { action: 'DELETE', new_records: [] } },
      { type: 'ResourceActionStarted', data: { name: 'b', action: 'DELETE', phase: 'cleanup', definition: null } },
    ]);
    sim.remove();
    sim.run();
    expect(sim.events.slice(-4).map((e) => e.type)).toEqual(['ResourceActionCompleted', 'TraversalCompleted', 'StackDeleted', 'TaskFinished']);
    expect(pendingDeadline(sim.state)).toBeNull();
  });

  it('a no-op update records what changed for the records and finishes at once', () => {
    const sim = createSim();
    const t = tpl({ a: { value: 1 } });
    sim.create(t);
    sim.run();
    givenStack(sim.events).when({ type: 'Update', template: t, timeout_s: null, rollback_on_failure: null, task_id: 'u', callback_url: null }).then([
      'TaskCreated', 'TraversalStarted', 'ResourceUnchanged',
      { type: 'CleanupSkipped', data: { records: [{ record_id: sim.byName('a')[0]!.record_id, why: 'current' }] } },
      { type: 'TraversalCompleted', data: { action: 'UPDATE' } },
      { type: 'TaskFinished', data: { task_id: 'u', state: 'succeeded' } },
    ]);
  });
});

describe('tasks', () => {
  it('a capacity failure keeps its code in the task error (no_capacity)', () => {
    const sim = createSim();
    sim.create(tpl({ a: {} }));
    const o = pendingWorkOrders(sim.state)[0]!;
    sim.exec({
      type: 'ReportResourceOutcome', traversal_id: o.traversal_id, action_id: o.action_id, record_id: o.record_id, phase: o.phase,
      outcome: 'failed', outputs: null, error: { code: 'no_capacity', message: 'no available node of class gpu' },
    });
    expect(sim.state).toMatchObject({ status: 'CREATE_FAILED', status_reason: 'Resource CREATE failed: resources.a: no available node of class gpu' });
    expect(sim.events.at(-1)).toMatchObject({ type: 'TaskFinished', data: { state: 'failed', error: { code: 'no_capacity' } } });
  });

  it('the view lists both versions of a resource while it is being replaced', () => {
    const sim = createSim();
    sim.create(tpl({ a: { replace_key: 1 } }));
    sim.run();
    sim.update(tpl({ a: { replace_key: 2, hold_on: ['create'] } }));
    sim.run();
    expect(stackView(sim.state).resources.map((r) => [r.name, r.status])).toEqual([['a', 'CREATE_COMPLETE'], ['a', 'CREATE_IN_PROGRESS']]);
    sim.signal('a');
    sim.run();
    expect(stackView(sim.state).resources.map((r) => [r.name, r.status])).toEqual([['a', 'CREATE_COMPLETE']]);
  });

  it('an update superseding an automatic rollback fails the rolled-back task with its original error', () => {
    const sim = createSim();
    sim.create(tpl({ a: {} }), { rollback_on_failure: true });
    sim.run();
    sim.update(tpl({ a: {}, b: { fail_on: ['create'] }, c: { hold_on: ['create'] } }));
    sim.run();
    expect(sim.state.status).toBe('ROLLBACK_IN_PROGRESS'); // waiting for c's held create
    sim.update(tpl({ a: {} }));
    const finished = sim.events.filter((e) => e.type === 'TaskFinished').at(-1)!;
    expect(finished.data).toEqual({
      task_id: 'task-2', state: 'failed',
      error: { code: 'resource_failed', message: 'Resource CREATE failed: resources.b: b refused to create; rollback superseded by update (task task-3).' },
    });
  });
});

describe('refusals, stale reports and signals', () => {
  it('answers not_found on an unknown stack and name_conflict on a second create', () => {
    givenStack([]).when({ type: 'Delete', ...noTask }).thenThrows('not_found');
    const sim = createSim();
    sim.create(tpl({}));
    givenStack(sim.events).when({ type: 'Create', name: 'x', owner: 'o', template: tpl({}), timeout_s: null, rollback_on_failure: null, task_id: 't', callback_url: null })
      .thenThrows('name_conflict');
  });

  it('refuses everything but reads on a deleted stack, and coalesces a second delete while deleting', () => {
    const sim = createSim();
    sim.create(tpl({ a: { hold_on: ['delete'] } }));
    sim.run();
    sim.remove();
    sim.run();
    expect(sim.remove().result).toMatchObject({ task_id: 'task-2', coalesced: true });
    sim.signal('a');
    sim.run();
    givenStack(sim.events).when({ type: 'Update', template: tpl({}), timeout_s: null, rollback_on_failure: null, task_id: 't', callback_url: null })
      .thenThrows('invalid_state', { current_state: 'DELETE_COMPLETE', allowed_actions: [] });
  });

  it('refuses a bad timeout and rollback when nothing failed', () => {
    const sim = createSim();
    sim.create(tpl({}));
    const g = givenStack(sim.events);
    g.when({ type: 'Update', template: tpl({}), timeout_s: 0, rollback_on_failure: null, task_id: 't', callback_url: null }).thenThrows('validation_failed');
    g.when({ type: 'Rollback', task_id: 't', callback_url: null }).thenThrows('invalid_state');
  });

  it('ignores a report for an action that is not in flight (stale or duplicate)', () => {
    const sim = createSim();
    sim.create(tpl({ a: {} }));
    const a = sim.byName('a')[0]!.action!;
    const report: StackCommand = {
      type: 'ReportResourceOutcome', traversal_id: a.traversal_id, action_id: 'not-this-one', record_id: sim.byName('a')[0]!.record_id,
      phase: 'update', outcome: 'complete', outputs: { physical_id: 'p', attributes: {} }, error: null,
    };
    givenStack(sim.events).when(report).thenIgnored();
  });

  it('signals: unknown name → not_found, nothing held → invalid_state, a repeated signal is ignored', () => {
    const sim = createSim();
    sim.create(tpl({ a: { hold_on: ['create'] }, b: {} }));
    sim.run();
    const g = givenStack(sim.events);
    g.when({ type: 'Signal', name: 'ghost', status: 'complete', reason: null }).thenThrows('not_found');
    g.when({ type: 'Signal', name: 'b', status: 'complete', reason: null }).thenThrows('invalid_state');
    g.when({ type: 'Signal', name: 'a', status: 'fail', reason: 'no' }).then(['ResourceSignalled', 'ResourceActionFailed', 'TraversalFailed', 'TaskFinished']);
  });

  it('a signal that arrives before the worker reports is applied when it does; a repeated one is ignored', () => {
    const sim = createSim({ duplicateRate: 0 });
    sim.create(tpl({ a: { hold_on: ['create'] } }));
    expect(sim.signal('a').events.map((e) => e.type)).toEqual(['ResourceSignalled']);
    expect(sim.signal('a', 'fail').result.ignored).toBe(true);
    sim.run();
    expect(sim.state.status).toBe('CREATE_COMPLETE');
    expect(() => sim.signal('a')).toThrow(/not waiting for a signal/);
  });
});
