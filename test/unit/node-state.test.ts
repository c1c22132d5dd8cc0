/**
 * The node fold (evolve): what the state shows after each recorded event. The same fold serves
 * the actor, the read model and replay, so these invariants hold for all three.
 */
import { describe, expect, it } from 'vitest';
import type { NodeEvent } from '../../machines/node/node.events.js';
import { evolveNode, initialNodeState, type NodeState } from '../../src/domain/node/state.js';
import { EVENT_TIME, ev, foldNode, history, NODE_ID, queued, started } from '../support/given.js';

const failedIn = (events: NodeEvent[], verb: string, state: string): NodeEvent[] => [
  ...events, ev.failed(`op-${verb}`, state, `${verb} broke`), ev.taskFinished(`task-${verb}`, 'failed', { code: 'driver_error', message: `${verb} broke` }),
];

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

describe('target_provision_state', () => {
  it.each([
    ['verifying', history.verifying, 'manageable'],
    ['cleaning (provide)', history.cleaning, 'available'],
    ['deploying', history.deploying, 'active'],
    ['wait call-back', history.waitCallBack, 'active'],
    ['deleting', history.deleting, 'available'],
    ['rescuing', history.rescuing, 'rescue'],
  ])('shows the default target while in %s', (_name, h, target) => {
    expect(foldNode(h()).target_provision_state).toBe(target);
  });

  it.each([
    ['enroll', history.enrolled], ['manageable', history.manageable], ['available', history.available], ['active', history.active],
  ])('is cleared in the stable state %s', (state, h) => {
    const s = foldNode(h());
    expect(s.provision_state).toBe(state);
    expect(s.target_provision_state).toBeNull();
  });

  it.each([
    ['deploy failed', () => failedIn(history.deploying(), 'deploy', 'deploying'), 'active'],
    ['clean failed', () => failedIn(history.cleaning(), 'provide', 'cleaning'), 'available'],
    ['inspect failed', () => failedIn(history.inspecting(), 'inspect', 'inspecting'), 'manageable'],
    ['adopt failed', () => failedIn([...history.manageable(), ...started('adopt', 'manageable')], 'adopt', 'adopting'), 'active'],
    ['rescue failed', () => failedIn(history.rescuing(), 'rescue', 'rescuing'), 'rescue'],
    ['service failed', () => failedIn(history.servicing(), 'service', 'servicing'), 'active'],
  ])('keeps its family target in the failure state %s', (state, h, target) => {
    const s = foldNode(h());
    expect(s.provision_state).toBe(state);
    expect(s.target_provision_state).toBe(target);
  });

  it('is cleared when a failure lands in a stable state (verifying --fail--> enroll)', () => {
    const s = foldNode(failedIn(history.verifying(), 'manage', 'verifying'));
    expect(s).toMatchObject({ provision_state: 'enroll', target_provision_state: null });
  });

  it('targets manageable during a manual clean, and clears on reaching it', () => {
    const h = history.manualCleaning();
    expect(foldNode(h).target_provision_state).toBe('manageable');
    const s = foldNode([...h, ev.succeeded('op-clean', 'cleaning', 'manage'), ev.taskFinished('task-clean')]);
    expect(s).toMatchObject({ provision_state: 'manageable', target_provision_state: null });
  });

  it('targets available when teardown goes on to cleaning', () => {
    const s = foldNode([...history.deleting(), ev.succeeded('op-undeploy', 'deleting', 'clean')]);
    expect(s).toMatchObject({ provision_state: 'cleaning', target_provision_state: 'available' });
  });
});

describe('last_error', () => {
  it('is set by a failed operation and by a failed power action', () => {
    expect(foldNode(failedIn(history.deploying(), 'deploy', 'deploying')).last_error).toBe('deploy broke');
    const power = [...history.powering(), { type: 'PowerActionFailed', data: { op_id: 'op-power', error: { code: 'driver_error', message: 'BMC said no' } } } as NodeEvent];
    expect(foldNode(power).last_error).toBe('BMC said no');
  });

  it.each(['deploy', 'active', 'rebuild'] as const)('is cleared when %s starts again from deploy failed', (verb) => {
    const failed = failedIn(history.deploying(), 'deploy', 'deploying');
    const s = foldNode([...failed, ev.taskCreated('task-again', verb), ev.actionStarted('task-again', 'op-again', verb, 'deploy failed')]);
    expect(s.last_error).toBeNull();
  });

  it('is cleared when manage starts after a failed clean, and when provide starts again', () => {
    const failed = failedIn(history.cleaning(), 'provide', 'cleaning');
    const managed = [...failed, ev.taskCreated('task-m', 'manage'), ev.actionStarted('task-m', 'op-m', 'manage', 'clean failed')];
    expect(foldNode(managed).last_error).toBeNull();
    const inspectFailed = failedIn(history.inspecting(), 'inspect', 'inspecting');
    const back = [...inspectFailed, ev.taskCreated('task-m', 'manage'), ev.actionStarted('task-m', 'op-m', 'manage', 'inspect failed'), ev.taskFinished('task-m')];
    expect(foldNode([...back, ev.taskCreated('task-p', 'provide'), ev.actionStarted('task-p', 'op-p', 'provide', 'manageable')]).last_error).toBeNull();
  });
});

describe('tasks and queue', () => {
  it('keeps running and queued tasks in the active map, with their state', () => {
    const s = foldNode([...history.deploying(), queued('task-q', 'rescue')]);
    expect(Object.keys(s.tasks).sort()).toEqual(['task-deploy', 'task-q']);
    expect(s.tasks['task-deploy']).toMatchObject({ state: 'running', started_at: EVENT_TIME, resource_id: NODE_ID, owner: 'acme' });
    expect(s.tasks['task-q']).toMatchObject({ state: 'queued', started_at: null });
  });

  it('drops a task from the active map once it is terminal', () => {
    expect(foldNode(history.active()).tasks).toEqual({});
    expect(foldNode([...history.deploying(), queued('task-q', 'rescue'), ev.taskCancelled('task-q')]).tasks['task-q']).toBeUndefined();
  });

  it('keeps the queue in arrival order and removes cancelled and started tasks', () => {
    const h = [...history.deploying(), queued('task-a', 'rescue'), queued('task-b', 'undeploy', { params: { x: 1 } }), queued('task-c', 'power off', { kind: 'power' })];
    expect(foldNode(h).queue).toEqual(['task-a', 'task-b', 'task-c']);
    expect(foldNode([...h, ev.taskCancelled('task-b')]).queue).toEqual(['task-a', 'task-c']);
    const next = [
      ...h, ev.succeeded('op-deploy', 'deploying'), ev.taskFinished('task-deploy'),
      ev.actionStarted('task-a', 'op-a', 'rescue', 'active'),
    ];
    const s = foldNode(next);
    expect(s.queue).toEqual(['task-b', 'task-c']);
    expect(s.op).toMatchObject({ task_id: 'task-a', kind: 'provision' });
    expect(s.tasks['task-a']!.state).toBe('running');
  });

  it('counts coalesced requests on the task', () => {
    const s = foldNode([...history.deploying(), { type: 'TaskCoalesced', data: { task_id: 'task-deploy', requested_by: 'x' } }]);
    expect(s.tasks['task-deploy']!.coalesced_count).toBe(1);
  });

  it('ends a power operation when its task finishes, clearing the target power state', () => {
    const running = foldNode(history.powering('power off'));
    expect(running).toMatchObject({ target_power_state: 'power off', op: { kind: 'power', task_id: 'task-power' } });
    const s = foldNode([...history.powering('power off'), ev.powerSucceeded('op-power', 'power off'), ev.taskFinished('task-power')]);
    expect(s).toMatchObject({ power_state: 'power off', target_power_state: null, op: null });
  });
});

describe('maintenance and power sync', () => {
  it('a user setting maintenance on a faulted node takes it over from the fault', () => {
    const faulted = [...history.available(), ev.syncFailed(3), ev.maintenanceSet('power failure: x', 'power failure')];
    expect(foldNode(faulted)).toMatchObject({ maintenance: true, fault: 'power failure', power_sync_failures: 3 });
    expect(foldNode([...faulted, ev.maintenanceSet('disk swap')])).toMatchObject({ maintenance: true, maintenance_reason: 'disk swap', fault: null });
  });

  it('unsetting maintenance clears flag, reason and fault', () => {
    const s = foldNode([...history.available(), ev.maintenanceSet('power failure: x', 'power failure'), ev.maintenanceUnset('power failure')]);
    expect(s).toMatchObject({ maintenance: false, maintenance_reason: null, fault: null });
  });
});

describe('the fold itself', () => {
  const long = (): NodeEvent[] => [
    ...history.deleting(), queued('task-q', 'power off', { kind: 'power' }), ev.succeeded('op-undeploy', 'deleting', 'clean'),
    ev.stepStarted('op-undeploy', 'step-2', 'cleaning'), ev.waiting('op-undeploy', 'cleaning'), ev.maintenanceSet('x'),
  ];

  it('is deterministic: replaying the same events twice gives equal states', () => {
    expect(foldNode(long())).toEqual(foldNode(long()));
  });

  it('gives a JSON-safe state (snapshots round-trip it unchanged)', () => {
    const s = foldNode(long());
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });

  it('never mutates the previous state', () => {
    const events = long();
    const before = deepFreeze(foldNode(events.slice(0, -3)));
    const copy = structuredClone(before);
    expect(() => foldNode(events.slice(-3), NODE_ID, before)).not.toThrow();
    expect(before).toEqual(copy);
  });

  it('tracks revision and times: provision_updated_at moves only with the provision state', () => {
    let s: NodeState = initialNodeState(NODE_ID);
    const apply = (e: NodeEvent, time: string): void => {
      s = evolveNode(s, { type: e.type, data: e.data as Record<string, unknown>, time, revision: s.revision + 1, position: String(s.revision + 2) });
    };
    apply(ev.enrolled(), '2026-01-01T00:00:00.000Z');
    apply(ev.taskCreated('task-manage', 'manage'), '2026-01-01T00:01:00.000Z');
    apply(ev.actionStarted('task-manage', 'op-manage', 'manage', 'enroll'), '2026-01-01T00:02:00.000Z');
    apply({ type: 'NodeUpdated', data: { changes: { traits: ['gpu'] } } }, '2026-01-01T00:03:00.000Z');
    expect(s).toMatchObject({
      revision: 3, position: '4', created_at: '2026-01-01T00:00:00.000Z', updated_at: '2026-01-01T00:03:00.000Z',
      provision_updated_at: '2026-01-01T00:02:00.000Z', traits: ['gpu'],
    });
  });

  it('throws on an event the machine refuses (a corrupted log)', () => {
    const bad: NodeEvent = {
      type: 'ProvisionActionStarted',
      data: { task_id: 't', op_id: 'o', action: 'deploy', event: 'deploy', from: 'enroll', to: 'deploying', target_provision_state: 'active', manual_clean: false, deadline_at: null },
    };
    expect(() => foldNode([...history.enrolled(), bad])).toThrow(/"deploy" is not accepted in "enroll"/);
    const doneTwice = [...history.active(), { type: 'OperationSucceeded', data: { op_id: 'op-deploy', event: 'done', from: 'deploying', to: 'active' } } as NodeEvent];
    expect(() => foldNode(doneTwice)).toThrow(/revision \d+: "done" is not accepted in "active"/);
  });
});
