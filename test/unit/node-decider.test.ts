/**
 * The node decider, given/when/then: every command, its events and its refusals
 * (node-lifecycle.md "Rules around the machine", api.md "Tasks" and "Precise semantics").
 */
import { describe, expect, it } from 'vitest';
import type { NodeEvent } from '../../machines/node/node.events.js';
import type { NodeCommand } from '../../src/domain/node/commands.js';
import { MAINTENANCE_REFUSED_VERBS } from '../../machines/node/node.model.js';
import {
  at, atEvent, cmd, completed, done, ENROLL_DATA, ev, failOutcome, given, history, holdOutcome, queued, started, waitOutcome,
} from '../support/given.js';

const deployRunning = { id: 'task-deploy', action: 'deploy', state: 'running' };
const adoptFailed = (): NodeEvent[] => [
  ...history.manageable(), ...started('adopt', 'manageable'), ev.failed('op-adopt', 'adopting'),
  ev.taskFinished('task-adopt', 'failed', { code: 'driver_error', message: 'boom' }),
];
const rescue = (): NodeEvent[] => [...history.active(), ...completed('rescue', 'active')];
const cleanFailed = (): NodeEvent[] => [
  ...history.cleaning(), ev.failed('op-provide', 'cleaning'), ev.taskFinished('task-provide', 'failed', { code: 'driver_error', message: 'boom' }),
];
const inMaintenance = (events: NodeEvent[]): NodeEvent[] => [...events, ev.maintenanceSet('disk swap')];

describe('Enroll', () => {
  it('records NodeEnrolled for a new node', () => {
    const d = given([]).when(cmd.enroll()).then([{ type: 'NodeEnrolled', data: { ...ENROLL_DATA } }]);
    expect(d.state).toMatchObject({ exists: true, provision_state: 'enroll', name: 'node-a', owner: 'acme' });
  });

  it('refuses to enroll the same id twice', () => {
    given(history.enrolled()).when(cmd.enroll()).thenThrows('name_conflict');
  });

  it('answers not_found to any other command on an unknown node', () => {
    given([]).when(cmd.provision('manage')).thenThrows('not_found');
  });

  it('answers not_found to commands on a deleted node', () => {
    given([...history.enrolled(), { type: 'NodeDeleted', data: {} }]).when(cmd.update({ traits: ['x'] })).thenThrows('not_found');
  });
});

describe('Update', () => {
  it('records the changes', () => {
    const d = given(history.available()).when(cmd.update({ traits: ['gpu'] })).then([{ type: 'NodeUpdated', data: { changes: { traits: ['gpu'] } } }]);
    expect(d.state.traits).toEqual(['gpu']);
  });

  it('records nothing for an empty patch', () => {
    given(history.available()).when(cmd.update({})).then([]);
  });

  it('accepts an If-Match equal to the current revision', () => {
    const g = given(history.available());
    g.when(cmd.update({ resource_class: 'big' }, g.state.revision)).then(['NodeUpdated']);
  });

  it('refuses an If-Match that is not the current revision with revision_mismatch', () => {
    const g = given(history.available());
    g.when(cmd.update({ resource_class: 'big' }, g.state.revision - 1)).thenThrows('revision_mismatch', { current_revision: g.state.revision });
  });

  it('refuses changes while an operation runs with node_busy naming the blocking task', () => {
    given(history.deploying()).when(cmd.update({ traits: ['gpu'] })).thenThrows('node_busy', { blocking_task: deployRunning, current_state: 'deploying' });
  });

  it('refuses changes while the operation waits for a callback', () => {
    given(history.waitCallBack()).when(cmd.update({ traits: ['gpu'] })).thenThrows('node_busy', { blocking_task: deployRunning });
  });
});

describe('Delete', () => {
  it.each([
    ['enroll', history.enrolled],
    ['manageable', history.manageable],
    ['available', history.available],
    ['adopt failed', adoptFailed],
  ])('deletes a node in %s', (state, h) => {
    const g = given(h());
    expect(g.state.provision_state).toBe(state);
    const d = g.when(cmd.delete()).then(['NodeDeleted']);
    expect(d.state.deleted).toBe(true);
  });

  it.each([
    ['active', history.active],
    ['deploy failed', history.deployFailed],
    ['clean failed', cleanFailed],
  ])('refuses to delete a node in %s with invalid_state', (state, h) => {
    given(h()).when(cmd.delete()).thenThrows('invalid_state', { current_state: state });
  });

  it('deletes a node in maintenance in any state, cancelling its running and queued tasks', () => {
    given(inMaintenance([...history.deploying(), queued('task-q', 'rescue')])).when(cmd.delete()).then([
      { type: 'TaskCancelled', data: { task_id: 'task-deploy' } },
      { type: 'TaskCancelled', data: { task_id: 'task-q' } },
      'NodeDeleted',
    ]);
  });

  it('refuses to delete a node claimed by a stack, even in maintenance', () => {
    given([...history.available(), ev.claimed()]).when(cmd.delete()).thenThrows('invalid_state', { current_state: 'available' });
    given(inMaintenance([...history.active(), ev.claimed()])).when(cmd.delete()).thenThrows('invalid_state');
  });

  it('refuses to delete while a power action runs', () => {
    given(history.powering()).when(cmd.delete()).thenThrows('node_busy');
  });
});

describe('RequestProvision: accepted verbs', () => {
  it.each([
    ['enroll', 'manage', history.enrolled, 'verifying', 'manageable', 'verify'],
    ['manageable', 'provide', history.manageable, 'cleaning', 'available', 'clean'],
    ['manageable', 'clean', history.manageable, 'cleaning', 'manageable', 'clean'],
    ['manageable', 'inspect', history.manageable, 'inspecting', 'manageable', 'inspect'],
    ['manageable', 'adopt', history.manageable, 'adopting', 'active', 'adopt'],
    ['available', 'deploy', history.available, 'deploying', 'active', 'deploy'],
    ['available', 'active', history.available, 'deploying', 'active', 'deploy'],
    ['active', 'rebuild', history.active, 'deploying', 'active', 'deploy'],
    ['active', 'undeploy', history.active, 'deleting', 'available', 'teardown'],
    ['active', 'deleted', history.active, 'deleting', 'available', 'teardown'],
    ['active', 'rescue', history.active, 'rescuing', 'rescue', 'rescue'],
    ['active', 'service', history.active, 'servicing', 'active', 'service'],
    ['rescue', 'unrescue', rescue, 'unrescuing', 'active', 'unrescue'],
    ['deploy failed', 'deploy', history.deployFailed, 'deploying', 'active', 'deploy'],
    ['adopt failed', 'adopt', adoptFailed, 'adopting', 'active', 'adopt'],
  ])('from %s, %s creates a task, starts the action and its first driver step', (from, verb, h, to, target, operation) => {
    const d = given(h()).when(cmd.provision(verb)).then([
      { type: 'TaskCreated', data: { task_id: 'task-new', action: verb, kind: 'provision', queued: false, requested_by: 'test' } },
      { type: 'ProvisionActionStarted', data: { task_id: 'task-new', op_id: 'gen-1', action: verb, from, to, target_provision_state: target } },
      { type: 'StepStarted', data: { op_id: 'gen-1', step_id: 'gen-2', operation, phase: 'start', deadline_at: at(3600) } },
    ]);
    expect(d.result).toEqual({ task_id: 'task-new', coalesced: false, ignored: false });
    expect(d.state.tasks['task-new']).toMatchObject({ state: 'running', action: verb });
    expect(d.state.op).toMatchObject({ task_id: 'task-new', step_id: 'gen-2' });
  });

  it('marks a clean from manageable as a manual clean that targets manageable', () => {
    given(history.manageable()).when(cmd.provision('clean')).then([
      'TaskCreated', { type: 'ProvisionActionStarted', data: { manual_clean: true, target_provision_state: 'manageable' } }, 'StepStarted',
    ]);
  });

  it('takes the step deadline from driver_info.step_timeout_s, else from the config', () => {
    given([...history.enrolled({ driver_info: { step_timeout_s: 60 } })]).when(cmd.provision('manage'))
      .then(['TaskCreated', 'ProvisionActionStarted', { type: 'StepStarted', data: { deadline_at: at(60) } }]);
    given(history.enrolled(), { config: { stepTimeoutS: 120 } }).when(cmd.provision('manage'))
      .then(['TaskCreated', 'ProvisionActionStarted', { type: 'StepStarted', data: { deadline_at: at(120) } }]);
  });

  it('records the callback url and idempotency key on the task', () => {
    given(history.available(), { idempotencyKey: 'k-1' }).when(cmd.provision('deploy', { callback_url: 'http://hook' }))
      .then([{ type: 'TaskCreated', data: { callback_url: 'http://hook', idempotency_key: 'k-1' } }, 'ProvisionActionStarted', 'StepStarted']);
  });

  it.each([
    ['available', 'manage', history.available, 'manageable'],
    ['clean failed', 'manage', cleanFailed, 'manageable'],
    ['adopt failed', 'manage', adoptFailed, 'manageable'],
  ])('finishes an instant verb at once (%s --%s-->)', (_from, verb, h, to) => {
    const d = given(h()).when(cmd.provision(verb)).then([
      'TaskCreated',
      { type: 'ProvisionActionStarted', data: { to, target_provision_state: null } },
      { type: 'TaskFinished', data: { task_id: 'task-new', state: 'succeeded', error: null } },
    ]);
    expect(d.state).toMatchObject({ provision_state: to, op: null, tasks: {} });
  });
});

describe('RequestProvision: refusals', () => {
  it('refuses a verb the state does not accept with invalid_state and the allowed actions', () => {
    given(history.manageable()).when(cmd.provision('deploy')).thenThrows('invalid_state', {
      current_state: 'manageable', allowed_actions: ['adopt', 'clean', 'inspect', 'provide'],
    });
  });

  it('refuses internal events used as verbs', () => {
    given(history.deploying()).when(cmd.provision('done')).thenThrows('invalid_state');
  });

  it.each([
    ['deploy', history.available], ['active', history.available], ['rebuild', history.active], ['rescue', history.active],
    ['service', history.active], ['unrescue', rescue], ['clean', history.manageable],
  ])('refuses %s in maintenance with in_maintenance', (verb, h) => {
    const err = given(inMaintenance(h())).when(cmd.provision(verb)).thenThrows('in_maintenance');
    expect(err.extensions['allowed_actions']).not.toContain(verb);
  });

  it('lists only the verbs maintenance allows', () => {
    given(inMaintenance(history.available())).when(cmd.provision('deploy')).thenThrows('in_maintenance', { allowed_actions: ['manage'] });
  });

  it('covers every maintenance-refused verb in the table above', () => {
    expect([...MAINTENANCE_REFUSED_VERBS].sort()).toEqual(['active', 'clean', 'deploy', 'rebuild', 'rescue', 'service', 'unrescue']);
  });

  it('still accepts verbs maintenance does not refuse', () => {
    given(inMaintenance(history.available())).when(cmd.provision('manage')).then(['TaskCreated', 'ProvisionActionStarted', 'TaskFinished']);
    given(inMaintenance(history.active())).when(cmd.provision('undeploy')).then(['TaskCreated', 'ProvisionActionStarted', 'StepStarted']);
  });

  it('refuses a second operation with node_busy naming the blocking task', () => {
    given(history.deploying()).when(cmd.provision('rescue')).thenThrows('node_busy', { blocking_task: deployRunning, current_state: 'deploying' });
  });

  it('refuses a provision verb while a power action runs unless queued', () => {
    given(history.powering()).when(cmd.provision('deploy')).thenThrows('node_busy', { blocking_task: { id: 'task-power', action: 'power on' } });
    given(history.powering()).when(cmd.provision('deploy', { on_busy: 'queue' })).then([{ type: 'TaskCreated', data: { queued: true } }]);
  });

  it('refuses in a wait state the verbs that state does not take', () => {
    given(history.waitCallBack()).when(cmd.provision('rescue')).thenThrows('node_busy');
  });
});

describe('RequestProvision: queue and coalescing', () => {
  it('queues behind the running operation when asked to', () => {
    const d = given(history.deploying()).when(cmd.provision('rescue', { on_busy: 'queue' }))
      .then([{ type: 'TaskCreated', data: { task_id: 'task-new', action: 'rescue', queued: true } }]);
    expect(d.state.queue).toEqual(['task-new']);
    expect(d.state.tasks['task-new']).toMatchObject({ state: 'queued', started_at: null });
    expect(d.result).toEqual({ task_id: 'task-new', coalesced: false, ignored: false });
  });

  it('appends to the end of the queue', () => {
    const d = given([...history.deploying(), queued('task-q1', 'rescue')]).when(cmd.provision('undeploy', { on_busy: 'queue' })).then(['TaskCreated']);
    expect(d.state.queue).toEqual(['task-q1', 'task-new']);
  });

  it('refuses with queue_full when the queue is at its depth', () => {
    const full = Array.from({ length: 16 }, (_, i) => queued(`task-q${i}`, 'rescue', { params: { i } }));
    given([...history.deploying(), ...full]).when(cmd.provision('undeploy', { on_busy: 'queue' })).thenThrows('queue_full', { queue_depth: 16 });
    given([...history.deploying(), ...full.slice(0, 15)]).when(cmd.provision('undeploy', { on_busy: 'queue' })).then(['TaskCreated']);
  });

  it('takes the queue depth from the config', () => {
    given([...history.deploying(), queued('task-q', 'rescue')], { config: { queueDepth: 1 } })
      .when(cmd.provision('undeploy', { on_busy: 'queue' })).thenThrows('queue_full', { queue_depth: 1 });
  });

  it('checks a queued verb against the state the node is heading for', () => {
    // deploying heads for active: rescue may queue, manage may not.
    given(history.deploying()).when(cmd.provision('rescue', { on_busy: 'queue' })).then(['TaskCreated']);
    const err = given(history.deploying()).when(cmd.provision('manage', { on_busy: 'queue' })).thenThrows('invalid_state', { current_state: 'deploying', allowed_actions: [] });
    expect(err.message).toContain('"active"');
  });

  it('refuses to queue a verb maintenance refuses', () => {
    given(inMaintenance(history.deploying())).when(cmd.provision('rescue', { on_busy: 'queue' })).thenThrows('in_maintenance');
  });

  it('coalesces a command identical to the running one into its task', () => {
    const d = given(history.deploying()).when(cmd.provision('deploy'))
      .then([{ type: 'TaskCoalesced', data: { task_id: 'task-deploy', requested_by: 'test' } }]);
    expect(d.result).toEqual({ task_id: 'task-deploy', coalesced: true, ignored: false });
    expect(d.state.tasks['task-deploy']!.coalesced_count).toBe(1);
  });

  it('coalesces a command identical to a queued one, whatever its on_busy and key order', () => {
    const g = given([...history.deploying(), queued('task-q', 'rescue', { params: { a: 1, b: [1, 2] } })]);
    g.when(cmd.provision('rescue', { params: { b: [1, 2], a: 1 } })).then([{ type: 'TaskCoalesced', data: { task_id: 'task-q' } }]);
  });

  it('coalesces even when the queue is full', () => {
    const full = Array.from({ length: 16 }, (_, i) => queued(`task-q${i}`, 'rescue', { params: { i } }));
    given([...history.deploying(), ...full]).when(cmd.provision('rescue', { on_busy: 'queue', params: { i: 3 } }))
      .then([{ type: 'TaskCoalesced', data: { task_id: 'task-q3' } }]);
  });

  it('does not coalesce the same verb with other parameters', () => {
    given([...history.deploying(), queued('task-q', 'rescue', { params: { a: 1 } })])
      .when(cmd.provision('rescue', { on_busy: 'queue', params: { a: 2 } })).then([{ type: 'TaskCreated', data: { task_id: 'task-new' } }]);
  });
});

describe('RequestProvision: wait and hold states', () => {
  it('abort from wait call-back fails the operation and cancels the original task', () => {
    const d = given(history.waitCallBack()).when(cmd.provision('abort')).then([
      { type: 'TaskCreated', data: { action: 'abort' } },
      { type: 'ProvisionActionStarted', data: { event: 'abort', from: 'wait call-back', to: 'deploy failed', target_provision_state: 'active' } },
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'cancelled', error: { code: 'cancelled' } } },
      { type: 'TaskFinished', data: { task_id: 'task-new', state: 'succeeded' } },
    ]);
    expect(d.state).toMatchObject({ provision_state: 'deploy failed', op: null, tasks: {} });
  });

  it('unhold keeps the original task running and waits again with a callback deadline', () => {
    const d = given(history.deployHold()).when(cmd.provision('unhold')).then([
      { type: 'TaskCreated', data: { action: 'unhold' } },
      { type: 'ProvisionActionStarted', data: { from: 'deploy hold', to: 'wait call-back', deadline_at: at(1800) } },
      { type: 'TaskFinished', data: { task_id: 'task-new', state: 'succeeded' } },
    ]);
    expect(d.state.op).toMatchObject({ task_id: 'task-deploy', op_id: 'op-deploy', deadline_at: at(1800) });
    expect(d.state.tasks['task-deploy']!.state).toBe('running');
  });

  it('delete from wait call-back supersedes the deploy task and starts teardown', () => {
    const d = given(history.waitCallBack()).when(cmd.provision('undeploy')).then([
      { type: 'TaskCreated', data: { action: 'undeploy' } },
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'cancelled', error: { code: 'cancelled' } } },
      { type: 'ProvisionActionStarted', data: { from: 'wait call-back', to: 'deleting', target_provision_state: 'available' } },
      { type: 'StepStarted', data: { operation: 'teardown' } },
    ]);
    expect(d.state.op).toMatchObject({ task_id: 'task-new', action: 'undeploy' });
    expect(Object.keys(d.state.tasks)).toEqual(['task-new']);
  });
});

describe('ReportStepOutcome', () => {
  it('done ends the operation in its stable state and succeeds the task', () => {
    const d = given(history.deploying()).when(cmd.step('deploy', done)).then([
      { type: 'OperationSucceeded', data: { op_id: 'op-deploy', event: 'done', from: 'deploying', to: 'active' } },
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'succeeded', error: null } },
    ]);
    expect(d.state).toMatchObject({ provision_state: 'active', target_provision_state: null, op: null, tasks: {} });
  });

  it('fail moves to the failure state, fails the task with driver_error and sets last_error', () => {
    const d = given(history.deploying()).when(cmd.step('deploy', failOutcome('disk on fire'))).then([
      { type: 'OperationFailed', data: { event: 'fail', error: { code: 'driver_error', message: 'disk on fire' }, to: 'deploy failed' } },
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'failed', error: { code: 'driver_error', message: 'disk on fire' } } },
    ]);
    expect(d.state).toMatchObject({ provision_state: 'deploy failed', target_provision_state: 'active', last_error: 'disk on fire' });
  });

  it('wait enters the wait state with a callback deadline; the task keeps running', () => {
    const d = given(history.deploying()).when(cmd.step('deploy', waitOutcome))
      .then([{ type: 'OperationWaiting', data: { from: 'deploying', to: 'wait call-back', deadline_at: at(1800) } }]);
    expect(d.state.op).toMatchObject({ task_id: 'task-deploy', step_id: null, deadline_at: at(1800) });
    expect(d.state.tasks['task-deploy']!.state).toBe('running');
  });

  it('takes the callback deadline from driver_info.callback_timeout_s', () => {
    given([ev.enrolled({ driver_info: { callback_timeout_s: 5 } }), ...history.deploying().slice(1)]).when(cmd.step('deploy', waitOutcome))
      .then([{ type: 'OperationWaiting', data: { deadline_at: at(5) } }]);
  });

  it('hold enters the hold state with the hold deadline', () => {
    given(history.deploying()).when(cmd.step('deploy', holdOutcome))
      .then([{ type: 'OperationHeld', data: { to: 'deploy hold', deadline_at: at(86400) } }]);
  });

  it('teardown done fires clean: deleting goes on to cleaning with a new step of the same task', () => {
    const d = given(history.deleting()).when(cmd.step('undeploy', done)).then([
      { type: 'OperationSucceeded', data: { event: 'clean', from: 'deleting', to: 'cleaning' } },
      { type: 'StepStarted', data: { op_id: 'op-undeploy', step_id: 'gen-1', operation: 'clean', phase: 'start' } },
    ]);
    expect(d.state).toMatchObject({ provision_state: 'cleaning', target_provision_state: 'available' });
    expect(d.state.tasks['task-undeploy']!.state).toBe('running');
  });

  it('a manual clean done fires manage and ends in manageable', () => {
    const d = given(history.manualCleaning()).when(cmd.step('clean', done)).then([
      { type: 'OperationSucceeded', data: { event: 'manage', from: 'cleaning', to: 'manageable' } },
      { type: 'TaskFinished', data: { task_id: 'task-clean', state: 'succeeded' } },
    ]);
    expect(d.state.target_provision_state).toBeNull();
  });

  it('a provide clean done ends in available', () => {
    given(history.cleaning()).when(cmd.step('provide', done)).then([{ type: 'OperationSucceeded', data: { to: 'available' } }, 'TaskFinished']);
  });

  it('ignores an outcome for another operation or another step', () => {
    given(history.deploying()).when(cmd.step('deploy', done, 'step-deploy', 'op-old')).thenIgnored();
    given(history.deploying()).when(cmd.step('deploy', done, 'step-old', 'op-deploy')).thenIgnored();
    given(history.active()).when(cmd.step('deploy', done)).thenIgnored();
    given(history.waitCallBack()).when(cmd.step('deploy', done)).thenIgnored();
  });

  it('changes nothing when the same outcome arrives twice (at-least-once delivery)', () => {
    for (const outcome of [done, failOutcome(), waitOutcome, holdOutcome]) {
      const first = given(history.deploying()).when(cmd.step('deploy', outcome)).decide();
      expect(first.events.length).toBeGreaterThan(0);
      given([...history.deploying(), ...first.events]).when(cmd.step('deploy', outcome)).thenIgnored();
    }
  });

  it('fails the operation when the driver asks to wait in a state that cannot wait', () => {
    const d = given(history.verifying()).when(cmd.step('manage', waitOutcome)).then([
      { type: 'OperationFailed', data: { event: 'fail', from: 'verifying', to: 'enroll', error: { code: 'driver_error', message: expect.stringContaining('cannot wait') } } },
      { type: 'TaskFinished', data: { task_id: 'task-manage', state: 'failed' } },
    ]);
    expect(d.state.target_provision_state).toBeNull();
  });

  it('fails the operation when the driver asks to hold in a state that cannot hold', () => {
    given(history.inspecting()).when(cmd.step('inspect', holdOutcome))
      .then([{ type: 'OperationFailed', data: { to: 'inspect failed' } }, { type: 'TaskFinished', data: { state: 'failed' } }]);
  });

  it('starts the next queued task when the operation ends', () => {
    const d = given([...history.deploying(), queued('task-q', 'rescue')]).when(cmd.step('deploy', done)).then([
      'OperationSucceeded',
      { type: 'TaskFinished', data: { task_id: 'task-deploy' } },
      { type: 'ProvisionActionStarted', data: { task_id: 'task-q', action: 'rescue', from: 'active', to: 'rescuing' } },
      { type: 'StepStarted', data: { operation: 'rescue' } },
    ]);
    expect(d.state.queue).toEqual([]);
    expect(d.state.tasks['task-q']).toMatchObject({ state: 'running', started_at: at(0) });
  });

  it('starts a queued power action when the operation ends, with its timeout', () => {
    given([...history.deploying(), queued('task-p', 'power off', { kind: 'power', params: { timeout_s: 60 } })]).when(cmd.step('deploy', done)).then([
      'OperationSucceeded', 'TaskFinished',
      { type: 'PowerActionStarted', data: { task_id: 'task-p', target: 'power off', target_power_state: 'power off', deadline_at: at(60) } },
    ]);
  });

  it('fails a queued task that no longer fits with precondition_failed naming the state, and starts the next', () => {
    const d = given([...history.deploying(), queued('task-q', 'rescue'), queued('task-u', 'undeploy')]).when(cmd.step('deploy', failOutcome())).then([
      'OperationFailed',
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'failed' } },
      { type: 'TaskFinished', data: { task_id: 'task-q', state: 'failed', error: { code: 'precondition_failed', message: expect.stringContaining('"deploy failed"') } } },
      { type: 'ProvisionActionStarted', data: { task_id: 'task-u', from: 'deploy failed', to: 'deleting' } },
      'StepStarted',
    ]);
    expect(d.state.queue).toEqual([]);
  });
});

describe('Heartbeat', () => {
  it('resume continues the operation with a resume step', () => {
    given(history.waitCallBack()).when(cmd.heartbeat('resume')).then([
      { type: 'OperationResumed', data: { from: 'wait call-back', to: 'deploying', via: 'heartbeat' } },
      { type: 'StepStarted', data: { op_id: 'op-deploy', operation: 'deploy', phase: 'resume', deadline_at: at(3600) } },
    ]);
  });

  it('done resumes and finishes the operation successfully', () => {
    given(history.waitCallBack()).when(cmd.heartbeat('done')).then([
      'OperationResumed',
      { type: 'OperationSucceeded', data: { from: 'deploying', to: 'active' } },
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'succeeded' } },
    ]);
  });

  it('done finishes at once where the wait state takes done itself', () => {
    given(history.inspectWait()).when(cmd.heartbeat('done'))
      .then([{ type: 'OperationSucceeded', data: { from: 'inspect wait', to: 'manageable' } }, 'TaskFinished']);
  });

  it('fail fails the operation with the message', () => {
    const d = given(history.waitCallBack()).when(cmd.heartbeat('fail', 'agent crashed')).then([
      { type: 'OperationFailed', data: { from: 'wait call-back', to: 'deploy failed', error: { code: 'driver_error', message: 'agent crashed' } } },
      { type: 'TaskFinished', data: { state: 'failed' } },
    ]);
    expect(d.state.last_error).toBe('agent crashed');
  });

  it.each([
    ['deploying', history.deploying], ['deploy hold', history.deployHold], ['active', history.active],
  ])('refuses a heartbeat in %s (not waiting) with invalid_state', (state, h) => {
    given(h()).when(cmd.heartbeat('resume')).thenThrows('invalid_state', { current_state: state });
  });
});

describe('ExpireDeadline', () => {
  it('fails the current step with deadline_expired', () => {
    given(history.deploying()).when(cmd.expire('op-deploy', atEvent(3600))).then([
      { type: 'OperationFailed', data: { event: 'fail', to: 'deploy failed', error: { code: 'deadline_expired', message: expect.stringContaining('step deadline') } } },
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'failed', error: { code: 'deadline_expired' } } },
    ]);
  });

  it('fails a wait state whose callback never came', () => {
    given(history.waitCallBack()).when(cmd.expire('op-deploy', atEvent(1800)))
      .then([{ type: 'OperationFailed', data: { error: { message: expect.stringContaining('callback deadline') } } }, 'TaskFinished']);
  });

  it('aborts a hold state, which has no fail edge', () => {
    given(history.deployHold()).when(cmd.expire('op-deploy', atEvent(86400))).then([
      { type: 'OperationFailed', data: { event: 'abort', from: 'deploy hold', to: 'deploy failed', error: { code: 'deadline_expired' } } },
      { type: 'TaskFinished', data: { state: 'failed' } },
    ]);
  });

  it('ignores a deadline that is no longer the current one', () => {
    given(history.waitCallBack()).when(cmd.expire('op-deploy', atEvent(3600))).thenIgnored(); // the step's, replaced by the callback's
    given(history.deploying()).when(cmd.expire('op-other', atEvent(3600))).thenIgnored();
    given(history.active()).when(cmd.expire('op-deploy', atEvent(3600))).thenIgnored();
  });

  it('ignores the hold deadline once unhold has set the callback deadline', () => {
    const unheld = given(history.deployHold()).when(cmd.provision('unhold')).decide();
    const g = given([...history.deployHold(), ...unheld.events]);
    g.when(cmd.expire('op-deploy', atEvent(86400))).thenIgnored();
    g.when(cmd.expire('op-deploy', at(1800))).then([{ type: 'OperationFailed', data: { from: 'wait call-back', error: { code: 'deadline_expired' } } }, 'TaskFinished']);
  });

  it('fails a power action that overran its deadline and frees the node', () => {
    const d = given(history.powering()).when(cmd.expire('op-power', atEvent(3600))).then([
      { type: 'PowerActionFailed', data: { error: { code: 'deadline_expired' } } },
      { type: 'TaskFinished', data: { task_id: 'task-power', state: 'failed', error: { code: 'deadline_expired' } } },
    ]);
    expect(d.state).toMatchObject({ op: null, target_power_state: null });
  });
});

describe('CancelTask', () => {
  it('cancels a queued task at once', () => {
    const d = given([...history.deploying(), queued('task-q', 'rescue')]).when(cmd.cancel('task-q'))
      .then([{ type: 'TaskCancelled', data: { task_id: 'task-q', reason: 'cancelled by test' } }]);
    expect(d.result.task_id).toBe('task-q');
    expect(d.state.queue).toEqual([]);
  });

  it('aborts an operation waiting for a callback; the original task ends cancelled', () => {
    const d = given(history.waitCallBack()).when(cmd.cancel('task-deploy', 'task-abort')).then([
      { type: 'TaskCreated', data: { task_id: 'task-abort', action: 'abort' } },
      { type: 'ProvisionActionStarted', data: { event: 'abort', to: 'deploy failed' } },
      { type: 'TaskFinished', data: { task_id: 'task-deploy', state: 'cancelled' } },
      { type: 'TaskFinished', data: { task_id: 'task-abort', state: 'succeeded' } },
    ]);
    expect(d.result.task_id).toBe('task-abort');
  });

  it('aborts a held operation', () => {
    given(history.cleanHold()).when(cmd.cancel('task-provide'))
      .then(['TaskCreated', { type: 'ProvisionActionStarted', data: { to: 'clean failed' } }, 'TaskFinished', 'TaskFinished']);
  });

  it('refuses to cancel an operation running a driver step with not_cancellable', () => {
    given(history.deploying()).when(cmd.cancel('task-deploy')).thenThrows('not_cancellable', { task_state: 'running' });
    given(history.powering()).when(cmd.cancel('task-power')).thenThrows('not_cancellable');
  });

  it('refuses to cancel a finished or unknown task', () => {
    given(history.active()).when(cmd.cancel('task-deploy')).thenThrows('not_cancellable', { task_state: 'terminal' });
  });
});

describe('Power', () => {
  it('starts a power action with a work order and a deadline', () => {
    const d = given(history.available()).when(cmd.power('power on')).then([
      { type: 'TaskCreated', data: { task_id: 'task-new', kind: 'power', action: 'power on', params: {}, queued: false } },
      { type: 'PowerActionStarted', data: { task_id: 'task-new', op_id: 'gen-1', step_id: 'gen-2', target: 'power on', target_power_state: 'power on', deadline_at: at(3600) } },
    ]);
    expect(d.state).toMatchObject({ target_power_state: 'power on', provision_state: 'available' });
  });

  it.each([
    ['rebooting', 'power on'], ['soft rebooting', 'power on'], ['power off', 'power off'], ['soft power off', 'power off'],
  ] as const)('%s targets %s', (target, targetPower) => {
    given(history.active()).when(cmd.power(target)).then(['TaskCreated', { type: 'PowerActionStarted', data: { target_power_state: targetPower } }]);
  });

  it('uses the timeout as the deadline and as a parameter', () => {
    given(history.active()).when(cmd.power('power off', { timeout_s: 30 }))
      .then([{ type: 'TaskCreated', data: { params: { timeout_s: 30 } } }, { type: 'PowerActionStarted', data: { deadline_at: at(30) } }]);
  });

  it.each([
    ['cleaning', history.cleaning], ['clean wait', history.cleanWait],
  ])('refuses power actions in %s with invalid_state', (state, h) => {
    given(h()).when(cmd.power('power off')).thenThrows('invalid_state', { current_state: state });
  });

  it('lets a power action queue behind a clean, checked against the state it heads for', () => {
    given(history.cleaning()).when(cmd.power('power off', { on_busy: 'queue' })).then([{ type: 'TaskCreated', data: { kind: 'power', queued: true } }]);
  });

  it('refuses a power action during an operation with node_busy, or queues it', () => {
    given(history.deploying()).when(cmd.power('power off')).thenThrows('node_busy', { blocking_task: deployRunning });
    const d = given(history.deploying()).when(cmd.power('power off', { on_busy: 'queue' }))
      .then([{ type: 'TaskCreated', data: { kind: 'power', queued: true } }]);
    expect(d.state.queue).toEqual(['task-new']);
  });

  it('coalesces an identical power action (five impatient reboots are one reboot)', () => {
    given(history.powering('rebooting')).when(cmd.power('rebooting')).then([{ type: 'TaskCoalesced', data: { task_id: 'task-power' } }]);
    given(history.powering('rebooting')).when(cmd.power('rebooting', { timeout_s: 5 })).thenThrows('node_busy');
  });

  it('records a successful outcome: power state set, task succeeded, node free', () => {
    const d = given(history.powering()).when(cmd.powerOutcome({ ok: true, power_state: 'power on' })).then([
      { type: 'PowerActionSucceeded', data: { op_id: 'op-power', power_state: 'power on' } },
      { type: 'TaskFinished', data: { task_id: 'task-power', state: 'succeeded' } },
    ]);
    expect(d.state).toMatchObject({ power_state: 'power on', target_power_state: null, op: null });
  });

  it('records a failed outcome with driver_error and last_error', () => {
    const d = given(history.powering()).when(cmd.powerOutcome({ ok: false, message: 'BMC said no' })).then([
      { type: 'PowerActionFailed', data: { error: { code: 'driver_error', message: 'BMC said no' } } },
      { type: 'TaskFinished', data: { state: 'failed', error: { code: 'driver_error' } } },
    ]);
    expect(d.state).toMatchObject({ last_error: 'BMC said no', target_power_state: null, power_state: null });
  });

  it('ignores a stale power outcome', () => {
    given(history.powering()).when(cmd.powerOutcome({ ok: true, power_state: 'power on' }, 'op-old')).thenIgnored();
    given(history.powering()).when(cmd.powerOutcome({ ok: true, power_state: 'power on' }, 'op-power', 'step-old')).thenIgnored();
    given(history.deploying()).when(cmd.powerOutcome({ ok: true, power_state: 'power on' }, 'op-deploy', 'step-deploy')).thenIgnored();
  });

  it('starts the queued provision verb after the power action', () => {
    given([...history.powering(), queued('task-q', 'deploy')]).when(cmd.powerOutcome({ ok: true, power_state: 'power on' }))
      .then(['PowerActionSucceeded', 'TaskFinished', { type: 'ProvisionActionStarted', data: { task_id: 'task-q' } }, 'StepStarted']);
  });
});

describe('ObservePower', () => {
  const failed = { ok: false, message: 'BMC unreachable' } as const;
  const on = { ok: true, power_state: 'power on' } as const;
  const poweredOn = (): NodeEvent[] => [...history.available(), ev.powerObserved('power on')];
  const faulted = (): NodeEvent[] => [
    ...poweredOn(), ev.syncFailed(1), ev.syncFailed(2), ev.syncFailed(3), ev.maintenanceSet('power failure: BMC unreachable', 'power failure'),
  ];

  it('records a divergence between the stored and the real power state', () => {
    given(history.available()).when(cmd.observe(on)).then([{ type: 'PowerStateObserved', data: { power_state: 'power on', previous: null } }]);
    given(poweredOn()).when(cmd.observe({ ok: true, power_state: 'power off' }))
      .then([{ type: 'PowerStateObserved', data: { power_state: 'power off', previous: 'power on' } }]);
  });

  it('records nothing when reality matches', () => {
    given(poweredOn()).when(cmd.observe(on)).then([]);
  });

  it('records no divergence while a power action is changing the state', () => {
    given(history.powering('power off')).when(cmd.observe(on)).then([]);
  });

  it('counts failures below the limit without maintenance', () => {
    given([...poweredOn(), ev.syncFailed(1)]).when(cmd.observe(failed)).then([{ type: 'PowerSyncFailed', data: { consecutive_failures: 2 } }]);
  });

  it('puts the node into maintenance with fault "power failure" at the limit and fails queued refused tasks', () => {
    const h = [ev.syncFailed(1), ev.syncFailed(2), ...history.deploying(), queued('task-q', 'rescue'), queued('task-u', 'undeploy')];
    const d = given(h).when(cmd.observe(failed)).then([
      { type: 'PowerSyncFailed', data: { consecutive_failures: 3 } },
      { type: 'MaintenanceSet', data: { fault: 'power failure', reason: expect.stringContaining('power failure') } },
      { type: 'TaskFinished', data: { task_id: 'task-q', state: 'failed', error: { code: 'precondition_failed' } } },
    ]);
    expect(d.state).toMatchObject({ maintenance: true, fault: 'power failure', queue: ['task-u'] });
  });

  it('takes the failure limit from the config', () => {
    given(poweredOn(), { config: { powerSyncFailures: 1 } }).when(cmd.observe(failed)).then(['PowerSyncFailed', 'MaintenanceSet']);
  });

  it('keeps counting once faulted without setting maintenance again', () => {
    given(faulted()).when(cmd.observe(failed)).then([{ type: 'PowerSyncFailed', data: { consecutive_failures: 4 } }]);
  });

  it('clears the fault and the maintenance it caused when the BMC answers again', () => {
    const d = given(faulted()).when(cmd.observe(on)).then([
      { type: 'PowerSyncRecovered', data: { after_failures: 3 } },
      { type: 'MaintenanceUnset', data: { fault_cleared: 'power failure' } },
    ]);
    expect(d.state).toMatchObject({ maintenance: false, fault: null, power_sync_failures: 0 });
  });

  it('never clears a maintenance set by a user', () => {
    const h = [...poweredOn(), ev.maintenanceSet('disk swap'), ev.syncFailed(1), ev.syncFailed(2)];
    given(h).when(cmd.observe(failed)).then(['PowerSyncFailed']);
    const d = given([...h, ev.syncFailed(3)]).when(cmd.observe(on)).then([{ type: 'PowerSyncRecovered', data: { after_failures: 3 } }]);
    expect(d.state).toMatchObject({ maintenance: true, maintenance_reason: 'disk swap' });
  });

  it('keeps a maintenance a user set on top of a power fault when the fault clears', () => {
    const d = given([...faulted(), ev.maintenanceSet('disk swap')]).when(cmd.observe(on)).decide();
    expect(d.events.map((e) => e.type)).toContain('PowerSyncRecovered');
    expect(d.state).toMatchObject({ maintenance: true, maintenance_reason: 'disk swap', fault: null });
  });
});

describe('SetMaintenance / UnsetMaintenance', () => {
  it('sets the flag and reason without changing the provision state', () => {
    const d = given(history.active()).when(cmd.setMaintenance('disk swap')).then([{ type: 'MaintenanceSet', data: { reason: 'disk swap', fault: null } }]);
    expect(d.state).toMatchObject({ maintenance: true, maintenance_reason: 'disk swap', provision_state: 'active' });
  });

  it('fails queued tasks that maintenance refuses and keeps the others', () => {
    const h = [...history.deploying(), queued('task-q', 'rescue'), queued('task-u', 'undeploy'), queued('task-p', 'power off', { kind: 'power' })];
    const d = given(h).when(cmd.setMaintenance()).then([
      'MaintenanceSet',
      { type: 'TaskFinished', data: { task_id: 'task-q', state: 'failed', error: { code: 'precondition_failed' } } },
    ]);
    expect(d.state.queue).toEqual(['task-u', 'task-p']);
  });

  it('unset clears the flag; it records nothing when not in maintenance', () => {
    const d = given(inMaintenance(history.active())).when(cmd.unsetMaintenance()).then([{ type: 'MaintenanceUnset', data: { fault_cleared: null } }]);
    expect(d.state).toMatchObject({ maintenance: false, maintenance_reason: null });
    given(history.active()).when(cmd.unsetMaintenance()).then([]);
  });
});

describe('RecordCallbackAttempt', () => {
  const attempt: NodeCommand = {
    type: 'RecordCallbackAttempt', task_id: 'task-deploy', attempt: 2, outcome: 'failed', final: false,
    status_code: 502, error: 'bad gateway', next_attempt_at: at(60),
  };

  it('records the delivery attempt of a finished task without touching the node', () => {
    const g = given(history.active());
    const d = g.when(attempt).then([{ type: 'CallbackAttempted', data: { task_id: 'task-deploy', attempt: 2, outcome: 'failed', next_attempt_at: at(60) } }]);
    expect({ ...d.state, revision: 0, updated_at: null }).toEqual({ ...g.state, revision: 0, updated_at: null });
  });

  it('records attempts even after the node record was deleted', () => {
    given([...history.available(), { type: 'NodeDeleted', data: {} }]).when(attempt).then(['CallbackAttempted']);
  });
});
