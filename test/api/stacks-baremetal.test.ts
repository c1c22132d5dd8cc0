/**
 * `ironclad::baremetal::server` and its scheduler (docs/stacks.md "Resource types", api.md
 * "Scheduler", node-lifecycle.md "Claims"): the worker against the real node service, actors and
 * read models of an Ironclad (fake driver, fake clock), plus the node API's answers on claimed nodes.
 */
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NodeService } from '../../src/app/nodes/node-service.js';
import type { Projector } from '../../src/app/projector.js';
import { CANDIDATES_SQL, type NodesReadModel } from '../../src/app/read-models/nodes.js';
import { createReadModelSchema } from '../../src/app/read-models/schema.js';
import { ResourceActionFailed, type ResourceOutputs, type ResourceWorker } from '../../src/app/stacks/resource-worker.js';
import { createBaremetalServerWorker } from '../../src/app/stacks/resources/baremetal-server.js';
import { createNodeWaiter } from '../../src/app/stacks/resources/node-waiter.js';
import type { StackWorkOrder } from '../../src/domain/stack/work.js';
import { IroncladError } from '../../src/domain/errors.js';
import { SYSTEM } from '../../src/domain/principal.js';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';
import { STACK_ENV } from '../support/stack-api.js';

const ADMIN = 'tAdmin';
const TOKENS = `${ADMIN}=ops:admin,tA=acme:member`;

let h: Harness;
let worker: ResourceWorker;
let nodesRM: NodesReadModel;
let seq = 0;

beforeEach(async () => {
  h = await createHarness({ ...STACK_ENV, IRONCLAD_TOKENS: TOKENS });
  const ic = h.ic.internals;
  nodesRM = ic['nodesRM'] as NodesReadModel;
  const waiter = createNodeWaiter({ get: (id) => nodesRM.get(id) });
  (ic['projector'] as Projector).onBatch((b) => waiter.notify(b.nodes.values()));
  worker = createBaremetalServerWorker({
    nodes: ic['nodes'] as NodeService, nodesRM, waiter, clock: h.clock, ids: { next: () => `00000000-0000-4000-9000-${String(++seq).padStart(12, '0')}` },
  });
});
afterEach(async () => h.close());

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function nodeOf(id: string): Promise<Record<string, any>> {
  await h.settle();
  const r = await h.req({ method: 'GET', url: `/v1/nodes/${id}`, token: ADMIN });
  expect(r.statusCode, r.body).toBe(200);
  return r.json();
}

/** Advances the fake clock until every promise settled (drivers and timers run on it). */
async function drive<T>(...ps: Promise<T>[]): Promise<PromiseSettledResult<T>[]> {
  let done = false;
  const all = Promise.allSettled(ps).then((x) => {
    done = true;
    return x;
  });
  for (let i = 0; i < 4000 && !done; i++) {
    h.clock.advance(25);
    await tick();
  }
  if (!done) throw new Error('the workers did not finish');
  return all;
}

/** Enrolls a fake node and brings it to `available` (manage, provide). */
async function available(name: string, body: Record<string, unknown> = {}): Promise<string> {
  const r = await h.req({ method: 'POST', url: '/v1/nodes', token: ADMIN, payload: { driver: 'fake', resource_class: 'baremetal', owner: 'acme', name, ...body } });
  expect(r.statusCode, r.body).toBe(201);
  const id = r.json().id as string;
  for (const [verb, state] of [['manage', 'manageable'], ['provide', 'available']] as const) {
    expect((await h.provision(id, verb, {}, ADMIN)).statusCode).toBe(202);
    for (let i = 0; (await nodeOf(id)).provision_state !== state || (await nodeOf(id)).current_task !== null; i++) {
      if (i > 400) throw new Error(`${name} did not reach ${state}`);
      h.clock.advance(25);
      await tick();
    }
  }
  return id;
}

function order(over: Partial<StackWorkOrder> & { stack?: string } = {}): StackWorkOrder {
  const name = over.name ?? 'server';
  return {
    traversal_id: 'trav-1', action_id: `act-${name}`, node_record_id: `rec-${name}`, phase: 'update', record_id: `rec-${name}`, name,
    type: 'ironclad::baremetal::server', action: 'CREATE', template_id: 'tmpl-1', definition: null,
    properties: { resource_class: 'baremetal' }, previous_properties: null, physical_id: null, requires: [], requires_names: [],
    inputs: {}, hold: false, deadline_at: '2100-01-01T00:00:00.000Z', ...over,
  } as StackWorkOrder;
}

function run(o: StackWorkOrder, stack = 'stack-a', owner = 'acme', signal = new AbortController().signal): Promise<ResourceOutputs> {
  return worker.run(o, { stack: { id: stack, owner, name: stack }, signal, heartbeat: () => {} });
}

const failure = (r: PromiseSettledResult<unknown>): ResourceActionFailed => {
  expect(r.status).toBe('rejected');
  const err = (r as PromiseRejectedResult).reason;
  expect(err).toBeInstanceOf(ResourceActionFailed);
  return err as ResourceActionFailed;
};
const value = <T>(r: PromiseSettledResult<T>): T => {
  expect(r.status, r.status === 'rejected' ? String((r as PromiseRejectedResult).reason) : '').toBe('fulfilled');
  return (r as PromiseFulfilledResult<T>).value;
};

describe('candidates (the nodes read model)', () => {
  it('lists free nodes of the owner, class and traits in name order, never maintenance, claimed or other tenants', async () => {
    await available('c-node', { traits: ['gpu', 'ssd'] });
    const a = await available('a-node', { traits: ['gpu'] });
    await available('b-node', { traits: ['ssd', 'gpu', 'x'] });
    const m = await available('m-node', { traits: ['gpu'] });
    await available('other-class', { resource_class: 'small', traits: ['gpu'] });
    await available('z-other-tenant', { owner: 'globex', traits: ['gpu'] });
    expect((await h.req({ method: 'PUT', url: `/v1/nodes/${m}/maintenance`, token: ADMIN, payload: { reason: 'fan' } })).statusCode).toBe(200);
    await h.settle();
    const names = (q: { traits?: string[]; exclude?: string[] }) =>
      nodesRM.candidates({ owner: 'acme', resource_class: 'baremetal', limit: 10, ...q }).map((n) => n.name);
    expect(names({})).toEqual(['a-node', 'b-node', 'c-node']);
    expect(names({ traits: ['gpu', 'ssd'] })).toEqual(['b-node', 'c-node']);
    expect(names({ traits: ['x'] })).toEqual(['b-node']);
    expect(names({ exclude: [a] })).toEqual(['b-node', 'c-node']);
    const [res] = await drive(run(order()));
    expect(value(res!)!.attributes).toEqual({ node_id: a, node_name: 'a-node' });
    await h.settle();
    expect(names({})).toEqual(['b-node', 'c-node']); // a-node is claimed (and active)
  });

  it('walks the candidates index in name order (no scan, no sort) for a fleet of any size', () => {
    const db = new Database(':memory:');
    createReadModelSchema(db);
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${CANDIDATES_SQL}`).all({ owner: 'acme', resource_class: 'x', traits: '[]', exclude: '[]', limit: 1 }) as { detail: string }[])
      .map((r) => r.detail);
    expect(plan[0]).toMatch(/^SEARCH n USING INDEX rm_nodes_candidates \(owner=\? AND resource_class=\?\)/);
    expect(plan.join('\n')).not.toMatch(/TEMP B-TREE|SCAN n\b/);
    db.close();
  });
});

describe('the baremetal server worker', () => {
  it('claims the first candidate in name order, deploys it and outputs its id and name', async () => {
    const n2 = await available('n2');
    await available('n3');
    const n1 = await available('n1');
    const [res] = await drive(run(order()));
    expect(value(res!)).toEqual({ physical_id: n1, attributes: { node_id: n1, node_name: 'n1' } });
    const view = await nodeOf(n1);
    expect(view).toMatchObject({ provision_state: 'active', allocation: { stack_id: 'stack-a', resource_name: 'server' }, allowed_actions: [] });
    expect((await nodeOf(n2)).allocation).toBeNull();
  });

  it('two stacks racing for three nodes never share one, and the loser fails with no_capacity', async () => {
    const ids = [await available('n1'), await available('n2'), await available('n3')];
    const results = await drive(
      run(order({ name: 's1' }), 'stack-a'), run(order({ name: 's2' }), 'stack-a'),
      // the same record and action ids in both stacks: a claim is idempotent only for its own stack
      run(order({ name: 's1' }), 'stack-b'), run(order({ name: 's2' }), 'stack-b'),
    );
    const won = results.filter((r) => r.status === 'fulfilled').map((r) => value(r)!.physical_id);
    expect(new Set(won).size).toBe(3);
    expect([...won].sort()).toEqual([...ids].sort());
    const lost = results.filter((r) => r.status === 'rejected');
    expect(lost).toHaveLength(1);
    const err = failure(lost[0]!);
    expect(err.code).toBe('no_capacity');
    expect(err.message).toMatch(/No capacity for server "s\d": no free node of resource_class "baremetal" in tenant acme/);
    const claims = [...nodesRM.claimedBy('stack-a'), ...nodesRM.claimedBy('stack-b')];
    expect(new Set(claims.map((n) => n.id)).size).toBe(3);
  });

  it('moves to the next node when a deploy fails; the failed node keeps no claim', async () => {
    const bad = await available('n1', { driver_info: { fake_deploy: 'fail' } });
    const good = await available('n2');
    const [res] = await drive(run(order()));
    expect(value(res!)!.physical_id).toBe(good);
    const failed = await nodeOf(bad);
    expect(failed).toMatchObject({ provision_state: 'deploy failed', allocation: null });
    expect(failed.last_error).toMatch(/fake deploy failed/);
    expect((await nodeOf(good)).allocation).toEqual({ stack_id: 'stack-a', resource_name: 'server' });
  });

  it('stops after max_attempts failed deploys with resource_failed naming every node tried', async () => {
    await available('n1', { driver_info: { fake_deploy: 'fail' } });
    await available('n2', { driver_info: { fake_deploy: 'fail' } });
    const n3 = await available('n3');
    const [res] = await drive(run(order({ properties: { resource_class: 'baremetal', max_attempts: 2 } })));
    const err = failure(res!);
    expect(err.code).toBe('resource_failed');
    expect(err.message).toMatch(/deploy failed on 2 node\(s\), max_attempts 2 reached: n1: .*; n2: /);
    expect((await nodeOf(n3)).allocation).toBeNull();
  });

  it('fails with no_capacity naming class, traits and what was tried when every candidate failed', async () => {
    await available('n1', { driver_info: { fake_deploy: 'fail' } });
    const [res] = await drive(run(order({ properties: { resource_class: 'baremetal', traits: ['gpu'] } })));
    expect(failure(res!).message).toMatch(/resource_class "baremetal" and traits \[gpu\] in tenant acme .*no candidate was available/);
    await available('n2', { traits: ['gpu'], driver_info: { fake_deploy: 'fail' } });
    const [res2] = await drive(run(order({ name: 'other', properties: { resource_class: 'baremetal', traits: ['gpu'] } })));
    const err = failure(res2!);
    expect(err.code).toBe('no_capacity');
    expect(err.message).toMatch(/tried n2: deploy failed: fake deploy failed/);
  });

  it("never claims another tenant's node, in maintenance, of another class or lacking a trait", async () => {
    await available('t', { owner: 'globex', traits: ['gpu'] });
    await available('c', { resource_class: 'small', traits: ['gpu'] });
    await available('tr', { traits: ['ssd'] });
    const m = await available('m', { traits: ['gpu'] });
    expect((await h.req({ method: 'PUT', url: `/v1/nodes/${m}/maintenance`, token: ADMIN, payload: {} })).statusCode).toBe(200);
    const [res] = await drive(run(order({ properties: { resource_class: 'baremetal', traits: ['gpu'] } })));
    expect(failure(res!).code).toBe('no_capacity');
    for (const n of nodesRM.allLive()) expect(n.allocation, n.name ?? '').toBeNull();
  });

  it('deleting the server undeploys the node (deleting → cleaning → available) and releases it', async () => {
    const n1 = await available('n1');
    const [res] = await drive(run(order()));
    const out = value(res!)!;
    const [del] = await drive(run(order({ action: 'DELETE', action_id: 'act-del', physical_id: out.physical_id, properties: { resource_class: 'baremetal' } })));
    expect(value(del!)).toBeNull();
    expect(await nodeOf(n1)).toMatchObject({ provision_state: 'available', allocation: null });
    const hist = (await h.req({ method: 'GET', url: `/v1/nodes/${n1}/history?limit=1000`, token: ADMIN })).json().items.map((e: any) => e.type);
    expect(hist.slice(-1)).toEqual(['NodeReleased']);
    const states = (await h.req({ method: 'GET', url: `/v1/nodes/${n1}/history?limit=1000`, token: ADMIN })).json().items
      .filter((e: any) => e.data.to).map((e: any) => e.data.to);
    expect(states.slice(-5)).toEqual(['deploying', 'active', 'deleting', 'cleaning', 'available']);
  });

  it('a delete does not touch a node its record does not hold', async () => {
    const n1 = await available('n1');
    const [res] = await drive(run(order(), 'stack-a'));
    const [del] = await drive(run(order({ action: 'DELETE', record_id: 'rec-other', action_id: 'act-del', physical_id: value(res!)!.physical_id })));
    expect(value(del!)).toBeNull();
    expect(await nodeOf(n1)).toMatchObject({ provision_state: 'active', allocation: { stack_id: 'stack-a' } });
  });

  it('an in-place update keeps the node', async () => {
    const n1 = await available('n1');
    await available('n2');
    const [res] = await drive(run(order()));
    const [upd] = await drive(run(order({ action: 'UPDATE', action_id: 'act-upd', physical_id: value(res!)!.physical_id, properties: { resource_class: 'baremetal', max_attempts: 5 } })));
    expect(value(upd!)).toEqual({ physical_id: n1, attributes: { node_id: n1, node_name: 'n1' } });
    expect(nodesRM.claimedBy('stack-a').map((n) => n.id)).toEqual([n1]);
  });

  it('a redelivered order continues with the node it already claimed and never claims a second one', async () => {
    const n1 = await available('n1', { driver_info: { fake_deploy_ms: 1000 } });
    await available('n2');
    const stop = new AbortController();
    const first = run(order(), 'stack-a', 'acme', stop.signal);
    first.catch(() => {});
    for (let i = 0; (await nodeOf(n1)).provision_state !== 'deploying'; i++) {
      if (i > 100) throw new Error('no deploy');
      h.clock.advance(10);
      await tick();
    }
    stop.abort(new Error('process stopping')); // the worker dies mid-deploy; the order is redelivered
    await expect(first).rejects.toThrow('process stopping');
    const [again] = await drive(run(order()));
    expect(value(again!)!.physical_id).toBe(n1);
    expect(nodesRM.claimedBy('stack-a').map((n) => n.id)).toEqual([n1]);
    const deploys = (await h.req({ method: 'GET', url: `/v1/tasks?resource_id=${n1}&action=deploy`, token: ADMIN })).json().items;
    expect(deploys).toHaveLength(1);
  });
});

describe('the baremetal server worker when a reply is lost', () => {
  it('retries a claim whose answer timed out with the same claim id, and keeps one node', async () => {
    const n1 = await available('n1');
    await available('n2');
    const real = h.ic.internals['nodes'] as NodeService;
    const lostOnce = new Set<string>();
    const flaky: typeof real = {
      ...real,
      // The command is applied, but its answer is lost (a cluster command_timeout), once per command type.
      async send(principal, id, command, meta) {
        const out = await real.send(principal, id, command, meta);
        if ((command.type === 'ClaimNode' || command.type === 'RequestProvision') && !lostOnce.has(command.type)) {
          lostOnce.add(command.type);
          throw new IroncladError('overloaded', `the ${command.type} answer was lost`, { reason: 'command_not_confirmed' });
        }
        return out;
      },
    };
    const waiter = createNodeWaiter({ get: (id) => nodesRM.get(id) });
    (h.ic.internals['projector'] as Projector).onBatch((b) => waiter.notify(b.nodes.values()));
    const w = createBaremetalServerWorker({ nodes: flaky, nodesRM, waiter, clock: h.clock, ids: { next: () => `00000000-0000-4000-9100-${String(++seq).padStart(12, '0')}` } });
    const [res] = await drive(w.run(order(), { stack: { id: 'stack-a', owner: 'acme', name: 'a' }, signal: new AbortController().signal, heartbeat: () => {} }));
    expect(value(res!)!.physical_id).toBe(n1);
    expect([...lostOnce].sort()).toEqual(['ClaimNode', 'RequestProvision']);
    expect(nodesRM.claimedBy('stack-a').map((n) => n.id)).toEqual([n1]);
    const deploys = (await h.req({ method: 'GET', url: `/v1/tasks?resource_id=${n1}&action=deploy`, token: ADMIN })).json().items;
    expect(deploys.map((t: any) => t.coalesced_count)).toEqual([1]); // the retried deploy joined the first one
  });
});

describe('the baremetal server worker while it waits', () => {
  it('heartbeats on the clock while a deploy waits for its agent, and finishes when the agent reports', async () => {
    const n1 = await available('n1', { driver_info: { fake_deploy: 'wait' } });
    let beats = 0;
    const p = worker.run(order(), { stack: { id: 'stack-a', owner: 'acme', name: 'a' }, signal: new AbortController().signal, heartbeat: () => void beats++ });
    for (let i = 0; (await nodeOf(n1)).provision_state !== 'wait call-back'; i++) {
      if (i > 100) throw new Error('no wait call-back');
      h.clock.advance(25);
      await tick();
    }
    const before = beats;
    for (let i = 0; i < 3; i++) {
      h.clock.advance(10_000);
      await tick();
    }
    expect(beats - before).toBeGreaterThanOrEqual(3); // nothing moved on the node: these came from the clock
    const hb = await h.req({ method: 'POST', url: `/v1/heartbeat/${n1}`, token: ADMIN, payload: { status: 'done' } });
    expect(hb.statusCode, hb.body).toBeLessThan(300);
    const [res] = await drive(p);
    expect(value(res!)!.physical_id).toBe(n1);
  });

  it('a create whose claim is released under it fails instead of claiming another node', async () => {
    const n1 = await available('n1', { driver_info: { fake_deploy: 'wait' } });
    const n2 = await available('n2');
    const create = run(order());
    for (let i = 0; (await nodeOf(n1)).provision_state !== 'wait call-back'; i++) {
      if (i > 100) throw new Error('no wait call-back');
      h.clock.advance(25);
      await tick();
    }
    const nodes = h.ic.internals['nodes'] as NodeService;
    const claimId = nodesRM.get(n1)!.allocation!.claim_id;
    await nodes.send(SYSTEM, n1, { type: 'ReleaseNode', claim_id: claimId }, { request_id: null, idempotency_key: null });
    expect((await h.req({ method: 'POST', url: `/v1/heartbeat/${n1}`, token: ADMIN, payload: { status: 'done' } })).statusCode).toBeLessThan(300);
    const [c] = await drive(create);
    const err = failure(c!);
    expect(err.code).toBe('resource_failed');
    expect(err.message).toContain('n1 was released while the server was being created');
    expect((await nodeOf(n2)).allocation).toBeNull();
  });
});

describe('a claimed node through the API', () => {
  it('refuses DELETE with 409 invalid_state naming the stack, and accepts it once released', async () => {
    const n1 = await available('n1');
    const [res] = await drive(run(order()));
    value(res!);
    const p = expectProblem(await h.req({ method: 'DELETE', url: `/v1/nodes/${n1}`, token: ADMIN }), 409, 'invalid_state');
    expect(p.detail).toContain('claimed by stack stack-a');
    expect(p.allocation).toEqual({ stack_id: 'stack-a', resource_name: 'server' });
    await drive(run(order({ action: 'DELETE', action_id: 'act-del', physical_id: n1 })));
    expect((await h.req({ method: 'DELETE', url: `/v1/nodes/${n1}`, token: ADMIN })).statusCode).toBe(204);
  });

  it("refuses a user's provision verb with 409 invalid_state naming the stack", async () => {
    const n1 = await available('n1');
    const [res] = await drive(run(order()));
    value(res!);
    const p = expectProblem(await h.provision(n1, 'undeploy', {}, 'tA'), 409, 'invalid_state');
    expect(p.detail).toContain('claimed by stack stack-a (resource server)');
    expect(p.allowed_actions).toEqual([]);
    expect((await nodeOf(n1)).provision_state).toBe('active');
  });
});

const SERVER = 'ironclad::baremetal::server';
const servers = (names: string[], properties: Record<string, unknown> = {}) => ({
  resources: Object.fromEntries(names.map((n) => [n, { type: SERVER, properties: { resource_class: 'baremetal', ...properties } }])),
});

/** Creates a stack as tenant acme (token tA) and returns its id and task id. */
async function createStack(name: string, template: unknown): Promise<{ id: string; task: string }> {
  const r = await h.createStack({ name, template }, 'tA');
  expect(r.statusCode, r.body).toBe(202);
  return { id: r.json().stack.id, task: r.json().task.id };
}

/** The stack once none of its resources is IN_PROGRESS (the fake clock moves meanwhile). */
async function quiet(id: string): Promise<Record<string, any>> {
  for (let i = 0; i < 400; i++) {
    const s = await h.stack(id, 'tA');
    if (!s.resources.some((r: any) => r.status.endsWith('_IN_PROGRESS'))) return s;
    h.clock.advance(25);
    await tick();
  }
  throw new Error(`stack ${id} still has resources in progress`);
}

describe('bare-metal servers through the stack API', () => {
  it('two stacks racing for three nodes never share one; the loser fails with a clear capacity reason', async () => {
    await available('n1');
    await available('n2');
    await available('n3');
    const a = await createStack('a', servers(['s1', 's2']));
    const b = await createStack('b', servers(['s1', 's2']));
    const tasks = [await h.finishTask(a.task, { token: 'tA' }), await h.finishTask(b.task, { token: 'tA' })];
    // A failed stack lets its in-flight actions finish: wait for the loser's other server too.
    const stacks = [await quiet(a.id), await quiet(b.id)];
    expect(tasks.map((t) => t.state).sort()).toEqual(['failed', 'succeeded']);
    expect(stacks.map((s) => s.status).sort()).toEqual(['CREATE_COMPLETE', 'CREATE_FAILED']);
    const loser = stacks.find((s) => s.status === 'CREATE_FAILED')!;
    expect(loser.status_reason).toMatch(/No capacity for server "s\d": no free node of resource_class "baremetal" in tenant acme/);
    const held = stacks.flatMap((s) => s.resources.filter((r: any) => r.status === 'CREATE_COMPLETE').map((r: any) => r.physical_id));
    expect(held).toHaveLength(3);
    expect(new Set(held).size).toBe(3);
    for (const s of stacks) {
      for (const r of s.resources.filter((x: any) => x.status === 'CREATE_COMPLETE')) {
        expect((await nodeOf(r.physical_id)).allocation).toEqual({ stack_id: s.id, resource_name: r.name });
      }
    }
  });

  it('a failed deploy moves the server to an alternate node; deleting the stack undeploys and releases it', async () => {
    const bad = await available('n1', { driver_info: { fake_deploy: 'fail' } });
    const good = await available('n2');
    const { id, task } = await createStack('web', servers(['server']));
    expect((await h.finishTask(task, { token: 'tA' })).state).toBe('succeeded');
    const s = await h.stack(id, 'tA');
    expect(s.resources[0]).toMatchObject({ name: 'server', status: 'CREATE_COMPLETE', physical_id: good, attributes: { node_id: good, node_name: 'n2' } });
    expect(await nodeOf(bad)).toMatchObject({ provision_state: 'deploy failed', allocation: null });
    expect(await nodeOf(good)).toMatchObject({ provision_state: 'active', allocation: { stack_id: id, resource_name: 'server' } });
    expectProblem(await h.req({ method: 'DELETE', url: `/v1/nodes/${good}`, token: 'tA' }), 409, 'invalid_state');

    const del = await h.req({ method: 'DELETE', url: `/v1/stacks/${id}`, token: 'tA' });
    expect(del.statusCode, del.body).toBe(202);
    expect((await h.finishTask(del.json().id, { token: 'tA' })).state).toBe('succeeded');
    expect((await h.stack(id, 'tA')).status).toBe('DELETE_COMPLETE');
    expect(await nodeOf(good)).toMatchObject({ provision_state: 'available', allocation: null });
  });

  it('an update of max_attempts keeps the node; a new resource_class replaces the server and releases the old node', async () => {
    const small = await available('a-small', { resource_class: 'small' });
    const big = await available('b-big');
    const { id, task } = await createStack('web', servers(['server']));
    expect((await h.finishTask(task, { token: 'tA' })).state).toBe('succeeded');
    expect((await h.stack(id, 'tA')).resources[0].physical_id).toBe(big);

    let r = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, token: 'tA', payload: { template: servers(['server'], { max_attempts: 5 }) } });
    expect(r.statusCode, r.body).toBe(202);
    expect((await h.finishTask(r.json().id, { token: 'tA' })).state).toBe('succeeded');
    expect((await h.stack(id, 'tA')).resources[0]).toMatchObject({ status: 'UPDATE_COMPLETE', physical_id: big });

    r = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, token: 'tA', payload: { template: servers(['server'], { resource_class: 'small' }) } });
    expect(r.statusCode, r.body).toBe(202);
    expect((await h.finishTask(r.json().id, { token: 'tA' })).state).toBe('succeeded');
    const s = await quiet(id);
    expect(s.resources).toHaveLength(1);
    expect(s.resources[0]).toMatchObject({ physical_id: small, attributes: { node_name: 'a-small' } });
    expect(await nodeOf(small)).toMatchObject({ provision_state: 'active', allocation: { stack_id: id, resource_name: 'server' } });
    expect(await nodeOf(big)).toMatchObject({ provision_state: 'available', allocation: null });
  });

  it('after a restart mid-deploy the server continues on the node it claimed (one claim, one deploy)', async () => {
    await h.close();
    h = await createHarness({ ...STACK_ENV, IRONCLAD_TOKENS: TOKENS }, { persistent: true });
    const n1 = await available('n1', { driver_info: { fake_deploy: 'wait' } });
    await available('n2');
    const { id, task } = await createStack('web', servers(['server']));
    for (let i = 0; (await nodeOf(n1)).provision_state !== 'wait call-back'; i++) {
      if (i > 200) throw new Error('no wait call-back');
      h.clock.advance(25);
      await tick();
    }
    await h.restart(); // the worker dies with the process; its order is dispatched again at start
    expect((await h.req({ method: 'POST', url: `/v1/heartbeat/${n1}`, token: ADMIN, payload: { status: 'done' } })).statusCode).toBeLessThan(300);
    expect((await h.finishTask(task, { token: 'tA' })).state).toBe('succeeded');
    expect((await h.stack(id, 'tA')).resources[0]).toMatchObject({ status: 'CREATE_COMPLETE', physical_id: n1 });
    const rm = h.ic.internals['nodesRM'] as NodesReadModel;
    expect(rm.claimedBy(id).map((n) => n.name)).toEqual(['n1']);
    const deploys = (await h.req({ method: 'GET', url: `/v1/tasks?resource_id=${n1}&action=deploy`, token: ADMIN })).json().items;
    expect(deploys).toHaveLength(1);
  });

  it("a stack never claims another tenant's node", async () => {
    const theirs = await available('n1', { owner: 'globex' });
    const { id, task } = await createStack('mine', servers(['server']));
    expect((await h.finishTask(task, { token: 'tA' })).state).toBe('failed');
    const s = await h.stack(id, 'tA');
    expect(s.status).toBe('CREATE_FAILED');
    expect(s.status_reason).toMatch(/No capacity .* in tenant acme .*no candidate was available/);
    expect(await nodeOf(theirs)).toMatchObject({ provision_state: 'available', allocation: null });
  });
});
