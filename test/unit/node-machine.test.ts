import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import {
  acceptedEvents,
  allowedVerbs,
  API_VERBS,
  DRIVER_OPERATION_FOR_STATE,
  INTERNAL_EVENTS,
  isApiVerb,
  machineDescription,
  MAINTENANCE_REFUSED_VERBS,
  nextProvisionState,
  nodeMachine,
  PROVISION_EVENTS,
  PROVISION_STATES,
  PROVISION_TRANSITIONS,
  stateInfo,
} from '../../machines/index.js';
import { DriverOperations } from '../../src/ports/driver.js';

// The only hand-written copy of docs/node-lifecycle.md's table: the machine must match it.
type Row = [state: string, stable: boolean, defaultTarget: string | null, kind: string, on: Record<string, string>];
const TABLE: Row[] = [
  ['enroll', true, null, 'stable', { manage: 'verifying' }],
  ['manageable', true, null, 'stable', { provide: 'cleaning', clean: 'cleaning', inspect: 'inspecting', adopt: 'adopting' }],
  ['available', true, null, 'stable', { deploy: 'deploying', manage: 'manageable' }],
  ['active', true, null, 'stable', { rebuild: 'deploying', delete: 'deleting', rescue: 'rescuing', service: 'servicing' }],
  ['error', true, null, 'stable', { rebuild: 'deploying', delete: 'deleting' }],
  ['rescue', true, null, 'stable', { rescue: 'rescuing', delete: 'deleting', unrescue: 'unrescuing' }],
  ['verifying', false, 'manageable', 'active', { done: 'manageable', fail: 'enroll' }],
  ['deploying', false, 'active', 'active', { fail: 'deploy failed', wait: 'wait call-back', hold: 'deploy hold', done: 'active' }],
  ['wait call-back', false, 'active', 'wait', { hold: 'deploy hold', resume: 'deploying', fail: 'deploy failed', abort: 'deploy failed', delete: 'deleting' }],
  ['deploy failed', false, 'active', 'failed', { rebuild: 'deploying', deploy: 'deploying', delete: 'deleting' }],
  ['deploy hold', false, 'active', 'hold', { unhold: 'wait call-back', abort: 'deploy failed' }],
  ['cleaning', false, 'available', 'active', { done: 'available', fail: 'clean failed', wait: 'clean wait', hold: 'clean hold', manage: 'manageable' }],
  ['clean wait', false, 'available', 'wait', { fail: 'clean failed', abort: 'clean failed', hold: 'clean hold', resume: 'cleaning' }],
  ['clean failed', false, 'available', 'failed', { manage: 'manageable' }],
  ['clean hold', false, 'available', 'hold', { abort: 'clean failed', unhold: 'clean wait' }],
  ['deleting', false, 'available', 'active', { fail: 'error', clean: 'cleaning' }],
  ['inspecting', false, 'manageable', 'active', { done: 'manageable', fail: 'inspect failed', wait: 'inspect wait' }],
  ['inspect failed', false, 'manageable', 'failed', { manage: 'manageable', inspect: 'inspecting' }],
  ['inspect wait', false, 'manageable', 'wait', { done: 'manageable', fail: 'inspect failed', abort: 'inspect failed', resume: 'inspecting' }],
  ['adopting', false, 'active', 'active', { done: 'active', fail: 'adopt failed' }],
  ['adopt failed', false, 'active', 'failed', { adopt: 'adopting', manage: 'manageable' }],
  ['rescuing', false, 'rescue', 'active', { done: 'rescue', wait: 'rescue wait', fail: 'rescue failed' }],
  ['rescue wait', false, 'rescue', 'wait', { resume: 'rescuing', fail: 'rescue failed', abort: 'rescue failed', delete: 'deleting' }],
  ['rescue failed', false, 'rescue', 'failed', { rescue: 'rescuing', unrescue: 'unrescuing', delete: 'deleting' }],
  ['unrescuing', false, 'active', 'active', { done: 'active', fail: 'unrescue failed' }],
  ['unrescue failed', false, 'active', 'failed', { rescue: 'rescuing', unrescue: 'unrescuing', delete: 'deleting' }],
  ['servicing', false, 'active', 'active', { done: 'active', fail: 'service failed', wait: 'service wait', hold: 'service hold' }],
  ['service wait', false, 'active', 'wait', { hold: 'service hold', resume: 'servicing', fail: 'service failed', abort: 'service failed', delete: 'deleting' }],
  ['service failed', false, 'active', 'failed', { service: 'servicing', rescue: 'rescuing', wait: 'service wait', hold: 'service hold', delete: 'deleting', abort: 'active' }],
  ['service hold', false, 'active', 'hold', { service: 'servicing', unhold: 'service wait', fail: 'service failed', abort: 'service failed' }],
];

const EVENTS = [
  'manage', 'provide', 'inspect', 'clean', 'adopt', 'rescue', 'unrescue', 'abort', 'unhold',
  'service', 'rebuild', 'deploy', 'delete', 'done', 'fail', 'wait', 'resume', 'hold',
];

const VERBS: Record<string, string> = {
  manage: 'manage', provide: 'provide', inspect: 'inspect', clean: 'clean', adopt: 'adopt',
  rescue: 'rescue', unrescue: 'unrescue', abort: 'abort', unhold: 'unhold', service: 'service',
  rebuild: 'rebuild', deploy: 'deploy', active: 'deploy', undeploy: 'delete', deleted: 'delete',
};

const TABLE_TRANSITIONS = TABLE.flatMap(([from, , , , on]) =>
  Object.entries(on).map(([event, to]) => ({ from, event, to })),
);
const TARGET = new Map(TABLE.map(([state, , , , on]) => [state, on]));
const PAIRS = TABLE.flatMap(([state, , , , on]) =>
  EVENTS.map((event) => ({ state, event, to: on[event] ?? null })),
);

const edgeKey = (t: { from: string; event: string; to: string }) => `${t.from} --${t.event}--> ${t.to}`;

/** A snapshot of the real machine with the given provision state. */
function snapshotAt(provision: string, power = 'unknown', maintenance = 'off') {
  return nodeMachine.resolveState({ value: { provision, power, maintenance } });
}

function expectedVerbs(state: string): string[] {
  const on = TARGET.get(state) ?? {};
  return Object.keys(VERBS).filter((verb) => VERBS[verb]! in on).sort();
}

describe('node machine: provision states', () => {
  it('has exactly the 30 states of the table, in its order', () => {
    expect(PROVISION_STATES.map((s) => s.name)).toEqual(TABLE.map(([state]) => state));
  });

  it.each(TABLE)('"%s" has stable=%s, default target %s and kind %s', (state, stable, defaultTarget, kind) => {
    expect(stateInfo(state)).toEqual({ name: state, stable, defaultTarget, kind });
    const node = nodeMachine.root.states.provision!.states[state]!;
    expect(node.meta).toEqual({ stable, defaultTarget, kind });
  });

  it('starts in enroll, power unknown, maintenance off', () => {
    const [snapshot] = initialTransition(nodeMachine);
    expect(nodeMachine.id).toBe('node');
    expect(snapshot.value).toEqual({ provision: 'enroll', power: 'unknown', maintenance: 'off' });
  });

  it('refuses to describe a state that does not exist', () => {
    expect(() => stateInfo('deployed')).toThrow(/Unknown provision state/);
    expect(() => nextProvisionState('deployed', 'done')).toThrow(/Unknown provision state/);
  });
});

describe('node machine: provision transitions', () => {
  it('has exactly the 93 transitions of the table', () => {
    expect(TABLE_TRANSITIONS).toHaveLength(93);
    expect(PROVISION_TRANSITIONS).toHaveLength(93);
    expect(new Set(PROVISION_TRANSITIONS.map(edgeKey)).size).toBe(93);
    expect(PROVISION_TRANSITIONS.map(edgeKey).sort()).toEqual(TABLE_TRANSITIONS.map(edgeKey).sort());
  });

  it('lists transitions in definition order', () => {
    expect(PROVISION_TRANSITIONS.map(edgeKey)).toEqual(TABLE_TRANSITIONS.map(edgeKey));
  });

  it('uses exactly the 18 provision events', () => {
    expect([...PROVISION_EVENTS]).toEqual(EVENTS);
    expect(new Set(PROVISION_TRANSITIONS.map((t) => t.event))).toEqual(new Set(EVENTS));
  });

  for (const { state, event, to } of PAIRS) {
    it(`${state} + ${event} → ${to ?? 'refused (null)'}`, () => {
      expect(nextProvisionState(state, event)).toBe(to);
    });
  }

  it.each(TABLE)('xstate itself moves "%s" only on its listed events', (state, _stable, _target, _kind, on) => {
    const snapshot = snapshotAt(state);
    for (const event of EVENTS) {
      const type = event as (typeof PROVISION_EVENTS)[number];
      const [next] = transition(nodeMachine, snapshot, { type });
      const expected = on[event] ?? state;
      expect({ event, can: snapshot.can({ type }), to: next.value }).toEqual({
        event,
        can: event in on,
        to: { provision: expected, power: 'unknown', maintenance: 'off' },
      });
    }
  });

  it.each(TABLE)('"%s" accepts exactly its listed events', (state, _stable, _target, _kind, on) => {
    expect(acceptedEvents(state)).toEqual(EVENTS.filter((e) => e in on));
  });

  it('accepts no event outside the provision vocabulary', () => {
    expect(nextProvisionState('available', 'power.on')).toBeNull();
    expect(nextProvisionState('available', 'toString')).toBeNull();
    expect(nextProvisionState('available', '')).toBeNull();
  });

  it('gives the same answer on repeated (cached) calls', () => {
    for (let i = 0; i < 3; i++) {
      expect(nextProvisionState('wait call-back', 'resume')).toBe('deploying');
      expect(nextProvisionState('wait call-back', 'deploy')).toBeNull();
    }
  });

  it('reaches every state from enroll', () => {
    const seen = new Set(['enroll']);
    const queue = ['enroll'];
    for (let state = queue.shift(); state !== undefined; state = queue.shift()) {
      for (const event of acceptedEvents(state)) {
        const next = nextProvisionState(state, event)!;
        if (seen.has(next)) continue;
        seen.add(next);
        queue.push(next);
      }
    }
    expect([...seen].sort()).toEqual(TABLE.map(([s]) => s).sort());
  });
});

describe('node machine: API verbs', () => {
  it('maps each verb to its event, aliases included', () => {
    expect({ ...API_VERBS }).toEqual(VERBS);
  });

  it('recognises API verbs and nothing else', () => {
    for (const verb of Object.keys(VERBS)) expect(isApiVerb(verb)).toBe(true);
    for (const s of [...INTERNAL_EVENTS, 'delete', 'toString', '__proto__', 'constructor', '']) {
      expect(isApiVerb(s)).toBe(false);
    }
  });

  it('keeps internal events out of the API', () => {
    expect([...INTERNAL_EVENTS]).toEqual(['done', 'fail', 'wait', 'resume', 'hold']);
    const apiEvents = new Set(Object.values(VERBS));
    expect(EVENTS.filter((e) => !apiEvents.has(e))).toEqual([...INTERNAL_EVENTS]);
  });

  it('allows deleted, rebuild, rescue, service and undeploy on an active node', () => {
    expect(allowedVerbs('active')).toEqual(['deleted', 'rebuild', 'rescue', 'service', 'undeploy']);
  });

  it('allows both deploy aliases on an available node', () => {
    expect(allowedVerbs('available')).toEqual(['active', 'deploy', 'manage']);
  });

  it('allows no verb while deploying', () => {
    expect(allowedVerbs('deploying')).toEqual([]);
  });

  it.each(TABLE.map(([state]) => state))('allows on "%s" exactly the verbs the table implies', (state) => {
    expect(allowedVerbs(state)).toEqual(expectedVerbs(state));
  });

  it('returns a fresh array each time', () => {
    allowedVerbs('active').pop();
    expect(allowedVerbs('active')).toHaveLength(5);
  });

  it('refuses the documented verbs in maintenance', () => {
    expect([...MAINTENANCE_REFUSED_VERBS].sort()).toEqual(
      ['active', 'clean', 'deploy', 'rebuild', 'rescue', 'service', 'unrescue'],
    );
  });
});

describe('node machine: driver operations', () => {
  it('names a driver operation for exactly the active-kind states', () => {
    const activeStates = TABLE.filter(([, , , kind]) => kind === 'active').map(([s]) => s);
    expect(Object.keys(DRIVER_OPERATION_FOR_STATE).sort()).toEqual(activeStates.sort());
  });

  it('uses exactly the driver port operations', () => {
    expect(new Set(Object.values(DRIVER_OPERATION_FOR_STATE))).toEqual(new Set(DriverOperations));
    expect(DRIVER_OPERATION_FOR_STATE.deleting).toBe('teardown');
    expect(DRIVER_OPERATION_FOR_STATE.verifying).toBe('verify');
  });
});

describe('node machine: power region', () => {
  const POWER_STATES = ['unknown', 'power on', 'power off'];

  it.each(POWER_STATES.flatMap((from) => [
    { from, event: 'power.on' as const, to: 'power on' },
    { from, event: 'power.off' as const, to: 'power off' },
  ]))('$event from $from records $to', ({ from, event, to }) => {
    const snapshot = snapshotAt('active', from);
    expect(snapshot.can({ type: event })).toBe(true);
    const [next] = transition(nodeMachine, snapshot, { type: event });
    expect(next.value).toEqual({ provision: 'active', power: to, maintenance: 'off' });
  });

  it('does not react to provision or maintenance events', () => {
    const [next] = transition(nodeMachine, snapshotAt('available', 'power on'), { type: 'deploy' });
    expect(next.value).toEqual({ provision: 'deploying', power: 'power on', maintenance: 'off' });
    const [after] = transition(nodeMachine, next, { type: 'maintenance.set' });
    expect(after.value).toMatchObject({ power: 'power on' });
  });
});

describe('node machine: maintenance region', () => {
  it.each([
    { from: 'off', event: 'maintenance.set' as const, to: 'on' },
    { from: 'on', event: 'maintenance.set' as const, to: 'on' },
    { from: 'off', event: 'maintenance.unset' as const, to: 'off' },
    { from: 'on', event: 'maintenance.unset' as const, to: 'off' },
  ])('$event from $from leaves maintenance $to', ({ from, event, to }) => {
    const [next] = transition(nodeMachine, snapshotAt('clean wait', 'power off', from), { type: event });
    expect(next.value).toEqual({ provision: 'clean wait', power: 'power off', maintenance: to });
  });

  it('leaves the provision machine answering as before (busy/maintenance rules are the runtime’s)', () => {
    const snapshot = snapshotAt('active', 'power on', 'on');
    const [next] = transition(nodeMachine, snapshot, { type: 'delete' });
    expect(next.value).toEqual({ provision: 'deleting', power: 'power on', maintenance: 'on' });
  });
});

describe('node machine: description', () => {
  it('serves states, transitions and API verbs, JSON-safe', () => {
    const d = machineDescription();
    expect(Object.keys(d).sort()).toEqual(['api_verbs', 'states', 'transitions']);
    expect(d.states).toEqual(TABLE.map(([name, stable]) => ({ name, stable })));
    expect(d.transitions.map(edgeKey)).toEqual(TABLE_TRANSITIONS.map(edgeKey));
    expect(d.transitions.every((t) => Object.keys(t).sort().join() === 'event,from,to')).toBe(true);
    expect(d.api_verbs).toEqual(VERBS);
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
  });

  it('cannot be changed by a caller', () => {
    const d = machineDescription();
    expect(Object.isFrozen(d) && Object.isFrozen(d.states) && Object.isFrozen(d.transitions)).toBe(true);
    expect(Object.isFrozen(d.api_verbs) && Object.isFrozen(d.states[0])).toBe(true);
  });
});
