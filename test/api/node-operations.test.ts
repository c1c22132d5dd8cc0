/**
 * Node operations through the API with the fake driver and a fake clock: wait/heartbeat,
 * hold/unhold/abort, deadlines, stale outcomes, power, queues, coalescing, cancel, long-poll,
 * task reads, maintenance, history, introspection and the operational endpoints.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';

type Json = Record<string, any>;

let h: Harness;
beforeEach(async () => {
  h = await createHarness();
});
afterEach(async () => h.close());

/** Enrolls a fake node with `driver_info` and drives it to `available`. */
async function available(driverInfo: Json = {}): Promise<string> {
  const id = await h.enroll({ driver_info: driverInfo });
  await h.provision(id, 'manage');
  await h.driveUntil(id, 'manageable');
  await h.provision(id, 'provide');
  await h.driveUntil(id, 'available');
  return id;
}

/** Advances the clock until the node is in `state` (a task may still be running, e.g. in `* wait`). */
async function reach(id: string, state: string): Promise<Json> {
  let n: Json = {};
  const there = async (): Promise<boolean> => (n = await h.node(id)).provision_state === state || (h.clock.advance(25), false);
  await waitFor(there, { what: `node ${id} in "${state}"` });
  return n;
}

/** Awaits a request while moving the clock, for answers that wait on work (Prefer: wait). */
async function whileAdvancing(p: Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
  let done = false;
  void p.finally(() => { done = true; });
  await waitFor(() => done || (h.clock.advance(25), false), { what: 'the request to answer' });
  return p;
}

const power = (id: string, target: string, extra: Json = {}) =>
  h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target, ...extra } });
const heartbeat = (id: string, status: string, message?: string) =>
  h.req({ method: 'POST', url: `/v1/heartbeat/${id}`, payload: { status, ...(message ? { message } : {}) } });
const cancel = (taskId: string) => h.req({ method: 'POST', url: `/v1/tasks/${taskId}/cancel` });

async function history(id: string): Promise<Json[]> {
  await h.settle();
  return (await h.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000` })).json().items;
}

/** The provision transitions recorded in a node's history, each `from` being the previous `to` (no duplicates, no gaps). */
async function transitions(id: string): Promise<string[]> {
  const moves = (await history(id)).filter((e) => typeof e.data.to === 'string');
  moves.forEach((e, i) => expect(e.data.from).toBe(i === 0 ? 'enroll' : moves[i - 1]!.data.to));
  return moves.map((e) => `${e.type}:${e.data.to}`);
}

/** A node in `wait call-back` (fake_deploy: "wait") and its running deploy task. */
async function waiting(driverInfo: Json = {}): Promise<{ id: string; deploy: string }> {
  const id = await available({ fake_deploy: 'wait', ...driverInfo });
  const deploy = (await h.provision(id, 'deploy')).json().id;
  const n = await reach(id, 'wait call-back');
  expect(n).toMatchObject({ target_provision_state: 'active', current_task: { id: deploy, state: 'running' }, allowed_actions: ['abort', 'deleted', 'undeploy'] });
  return { id, deploy };
}

describe('wait call-back and heartbeats', () => {
  it('resumes on a "resume" heartbeat and finishes the deploy with the driver', async () => {
    const { id, deploy } = await waiting();
    const r = await heartbeat(id, 'resume');
    expect(r.statusCode).toBe(202);
    expect(r.json()).toEqual({ status: 'resume', provision_state: 'deploying' });
    expect((await h.driveUntil(id, 'active')).last_error).toBeNull();
    expect(await h.task(deploy)).toMatchObject({ state: 'succeeded', error: null });
    expect(await transitions(id)).toContain('OperationResumed:deploying');
  });

  it('finishes the operation at once on a "done" heartbeat', async () => {
    const { id, deploy } = await waiting();
    const r = await heartbeat(id, 'done');
    expect(r.json()).toEqual({ status: 'done', provision_state: 'active' });
    expect(await h.task(deploy)).toMatchObject({ state: 'succeeded' });
    expect((await h.node(id)).current_task).toBeNull();
  });

  it('fails the deploy on a "fail" heartbeat, keeping the message as last_error', async () => {
    const { id, deploy } = await waiting();
    expect((await heartbeat(id, 'fail', 'disk not found')).json().provision_state).toBe('deploy failed');
    expect(await h.node(id)).toMatchObject({ provision_state: 'deploy failed', target_provision_state: 'active', last_error: 'disk not found' });
    expect((await h.task(deploy)).error).toEqual({ code: 'driver_error', message: 'disk not found' });
  });

  it('refuses a heartbeat for a node that is not waiting', async () => {
    const id = await available();
    const r = await heartbeat(id, 'resume');
    expect(r.statusCode).toBe(409);
    expect(r.json()).toMatchObject({ code: 'invalid_state', current_state: 'available' });
  });
});

describe('hold, unhold and abort', () => {
  it('unholds a held deploy into wait call-back with its own task, then resumes to active', async () => {
    const id = await available({ fake_deploy: 'hold' });
    const deploy = (await h.provision(id, 'deploy')).json().id;
    expect((await reach(id, 'deploy hold')).allowed_actions).toEqual(['abort', 'unhold']);
    const r = await h.provision(id, 'unhold');
    expect(r.statusCode).toBe(202);
    expect(r.json().id).not.toBe(deploy);
    expect(await h.task(r.json().id)).toMatchObject({ action: 'unhold', state: 'succeeded' });
    expect(await h.node(id)).toMatchObject({ provision_state: 'wait call-back', current_task: { id: deploy } });
    expect((await h.task(deploy)).state).toBe('running');
    await heartbeat(id, 'resume');
    await h.driveUntil(id, 'active');
    expect((await h.task(deploy)).state).toBe('succeeded');
  });

  it('aborts from wait call-back: deploy failed, the abort succeeds and the deploy is cancelled', async () => {
    const { id, deploy } = await waiting();
    const r = await h.provision(id, 'abort');
    expect(r.statusCode).toBe(202);
    expect(await h.node(id)).toMatchObject({ provision_state: 'deploy failed', current_task: null });
    expect(await h.task(r.json().id)).toMatchObject({ action: 'abort', state: 'succeeded' });
    expect(await h.task(deploy)).toMatchObject({ state: 'cancelled', error: { code: 'cancelled' } });
  });

  it('aborts from deploy hold', async () => {
    const id = await available({ fake_deploy: 'hold' });
    const deploy = (await h.provision(id, 'deploy')).json().id;
    await reach(id, 'deploy hold');
    expect((await h.provision(id, 'abort')).statusCode).toBe(202);
    expect([(await h.node(id)).provision_state, (await h.task(deploy)).state]).toEqual(['deploy failed', 'cancelled']);
    expect((await transitions(id)).slice(-2)).toEqual(['OperationHeld:deploy hold', 'ProvisionActionStarted:deploy failed']);
  });
});

describe('deadlines and driver outcomes', () => {
  it('fails the deploy when the callback deadline passes', async () => {
    const { id, deploy } = await waiting({ callback_timeout_s: 30 });
    h.clock.advance(29_000);
    expect((await h.node(id)).provision_state).toBe('wait call-back');
    h.clock.advance(2_000);
    const n = await reach(id, 'deploy failed');
    expect(n.last_error).toMatch(/callback deadline of "wait call-back" expired/);
    expect((await h.task(deploy)).error).toMatchObject({ code: 'deadline_expired', message: n.last_error });
  });

  it('ignores the outcome of a step whose deadline already failed it (no duplicate transition)', async () => {
    const id = await available({ fake_deploy_ms: 5_000, step_timeout_s: 1 });
    const deploy = (await h.provision(id, 'deploy')).json().id;
    h.clock.advance(1_000);
    await reach(id, 'deploy failed');
    expect((await h.task(deploy)).error.code).toBe('deadline_expired');
    h.clock.advance(5_000); // the driver now reports "done" for the expired step
    await h.settle();
    expect((await h.node(id)).provision_state).toBe('deploy failed');
    const moves = await transitions(id);
    expect(moves.slice(-2)).toEqual(['ProvisionActionStarted:deploying', 'OperationFailed:deploy failed']);
    expect(moves.filter((m) => m.startsWith('OperationSucceeded:active'))).toEqual([]);
  });

  it('fails the deploy with driver_error when the fake driver fails', async () => {
    const id = await available({ fake_deploy: 'fail' });
    const deploy = (await h.provision(id, 'deploy')).json().id;
    const n = await h.driveUntil(id, 'deploy failed');
    expect(n).toMatchObject({ last_error: expect.stringContaining('fake deploy failed'), allowed_actions: ['active', 'deleted', 'deploy', 'rebuild', 'undeploy'] });
    expect((await h.task(deploy)).error).toMatchObject({ code: 'driver_error', message: n.last_error });
  });

  it('runs a manual clean from manageable back to manageable', async () => {
    const id = await h.enroll();
    await h.provision(id, 'manage');
    await h.driveUntil(id, 'manageable');
    const task = (await h.provision(id, 'clean', { clean_steps: [{ step: 'erase_devices' }] })).json();
    expect(task.params).toEqual({ clean_steps: [{ step: 'erase_devices' }] });
    expect(await h.node(id)).toMatchObject({ provision_state: 'cleaning', target_provision_state: 'manageable' });
    expect((await h.driveUntil(id, 'manageable')).target_provision_state).toBeNull();
    expect((await h.task(task.id)).state).toBe('succeeded');
  });
});

describe('power', () => {
  it('shows target_power_state while a power task runs, then power_state follows', async () => {
    const id = await available();
    for (const [target, result] of [['power on', 'power on'], ['power off', 'power off'], ['rebooting', 'power on']] as const) {
      const r = await power(id, target);
      expect(r.statusCode).toBe(202);
      expect(r.json()).toMatchObject({ action: target, state: 'running' });
      expect(await h.node(id)).toMatchObject({ target_power_state: result, provision_state: 'available', current_task: { id: r.json().id } });
      await h.driveUntil(id, 'available');
      expect(await h.node(id)).toMatchObject({ power_state: result, target_power_state: null });
      expect((await h.task(r.json().id)).state).toBe('succeeded');
    }
  });
});

describe('queues and coalescing', () => {
  it('queues behind a deploy in order and starts them when it finishes', async () => {
    const id = await available({ fake_deploy_ms: 1_000 });
    const deploy = (await h.provision(id, 'deploy')).json().id;
    const off = await power(id, 'power off', { on_busy: 'queue' });
    expect([off.statusCode, off.json().state, off.json().started_at]).toEqual([202, 'queued', null]);
    const rescue = (await h.provision(id, 'rescue', { on_busy: 'queue' })).json();
    const n = await h.node(id);
    expect(n.current_task.id).toBe(deploy);
    expect(n.queued_tasks.map((t: Json) => [t.id, t.action, t.state])).toEqual([[off.json().id, 'power off', 'queued'], [rescue.id, 'rescue', 'queued']]);
    expect(await h.driveUntil(id, 'rescue')).toMatchObject({ power_state: 'power off', queued_tasks: [] });
    const [d, p, r] = [await h.task(deploy), await h.task(off.json().id), await h.task(rescue.id)];
    expect([d.state, p.state, r.state]).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(Date.parse(p.started_at)).toBeGreaterThanOrEqual(Date.parse(d.finished_at));
    expect(Date.parse(r.started_at)).toBeGreaterThanOrEqual(Date.parse(p.finished_at));
  });

  it('fails a queued command that no longer fits with precondition_failed naming the state', async () => {
    const id = await available({ fake_deploy: 'fail' });
    await h.provision(id, 'deploy');
    const rescue = (await h.provision(id, 'rescue', { on_busy: 'queue' })).json();
    expect(rescue.state).toBe('queued');
    await h.driveUntil(id, 'deploy failed');
    expect(await h.task(rescue.id)).toMatchObject({ state: 'failed', error: { code: 'precondition_failed', message: expect.stringContaining('"deploy failed"') } });
  });

  it('fails queued refused commands when the node goes into maintenance', async () => {
    const id = await available({ fake_deploy_ms: 1_000 });
    await h.provision(id, 'deploy');
    const rescue = (await h.provision(id, 'rescue', { on_busy: 'queue' })).json();
    await h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: { reason: 'fan' } });
    expect((await h.task(rescue.id)).error.code).toBe('precondition_failed');
    expect((await h.node(id)).queued_tasks).toEqual([]);
  });

  it('refuses at once a command that cannot follow where the node is heading', async () => {
    const id = await available({ fake_deploy_ms: 1_000 });
    await h.provision(id, 'deploy');
    const r = await h.provision(id, 'manage', { on_busy: 'queue' });
    expect(r.statusCode).toBe(409);
    expect(r.json()).toMatchObject({ code: 'invalid_state', current_state: 'deploying', detail: expect.stringContaining('"active"') });
    expect((await h.node(id)).queued_tasks).toEqual([]);
  });

  it('coalesces five identical reboots into one task', async () => {
    const id = await available();
    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await power(id, 'rebooting'));
    expect(answers.map((a) => a.statusCode)).toEqual([202, 202, 202, 202, 202]);
    expect(new Set(answers.map((a) => a.json().id)).size).toBe(1);
    expect(answers[0]!.json().coalesced).toBeUndefined();
    expect(answers.slice(1).map((a) => a.json().coalesced)).toEqual([true, true, true, true]);
    expect(answers[4]!.json().coalesced_count).toBe(4);
    expect((await h.task(answers[0]!.json().id)).coalesced_count).toBe(4);
  });

  it('coalesces identical provision commands, running or queued, but not ones with other parameters', async () => {
    const id = await available({ fake_deploy_ms: 1_000 });
    const first = (await h.provision(id, 'deploy')).json();
    for (let i = 0; i < 4; i++) expect((await h.provision(id, 'deploy')).json()).toMatchObject({ id: first.id, coalesced: true });
    expect((await h.task(first.id)).coalesced_count).toBe(4);
    const a = (await h.provision(id, 'rebuild', { on_busy: 'queue', configdrive: 'a' })).json();
    expect((await h.provision(id, 'rebuild', { on_busy: 'queue', configdrive: 'a' })).json()).toMatchObject({ id: a.id, state: 'queued', coalesced: true, coalesced_count: 1 });
    const b = (await h.provision(id, 'rebuild', { on_busy: 'queue', configdrive: 'b' })).json();
    expect(b.id).not.toBe(a.id);
    expect((await h.node(id)).queued_tasks.map((t: Json) => t.id)).toEqual([a.id, b.id]);
  });

  it('coalesces identical commands carrying a secret parameter, never showing the secret', async () => {
    const id = await available({ fake_deploy_ms: 1_000 });
    await h.provision(id, 'deploy');
    const a = (await h.provision(id, 'rescue', { on_busy: 'queue', rescue_password: 'pw-a' })).json();
    expect(a.params).toEqual({ rescue_password: '******' });
    expect((await h.provision(id, 'rescue', { on_busy: 'queue', rescue_password: 'pw-a' })).json()).toMatchObject({ id: a.id, coalesced: true });
    const b = (await h.provision(id, 'rescue', { on_busy: 'queue', rescue_password: 'pw-b' })).json();
    expect(b.id).not.toBe(a.id);
    expect((await h.task(b.id)).params).toEqual({ rescue_password: '******' });
  });
});

describe('cancel', () => {
  it('cancels a queued task at once (200)', async () => {
    const id = await available({ fake_deploy_ms: 1_000 });
    await h.provision(id, 'deploy');
    const queued = (await power(id, 'power off', { on_busy: 'queue' })).json();
    const r = await cancel(queued.id);
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ id: queued.id, state: 'cancelled', error: { code: 'cancelled' } });
    expect((await h.node(id)).queued_tasks).toEqual([]);
  });

  it('aborts a deploy waiting for its callback (202 with the abort task)', async () => {
    const { id, deploy } = await waiting();
    const r = await cancel(deploy);
    expect(r.statusCode).toBe(202);
    expect(r.json()).toMatchObject({ action: 'abort', resource_id: id });
    expect(r.headers['location']).toBe(`/v1/tasks/${r.json().id}`);
    expect((await h.task(deploy)).state).toBe('cancelled');
    expect((await h.node(id)).provision_state).toBe('deploy failed');
  });

  it('refuses to cancel a running deploy step or a finished task', async () => {
    const id = await available({ fake_deploy_ms: 1_000 });
    const deploy = (await h.provision(id, 'deploy')).json().id;
    let r = await cancel(deploy);
    expect([r.statusCode, r.json().code, r.json().task_state]).toEqual([409, 'not_cancellable', 'running']);
    await h.driveUntil(id, 'active');
    r = await cancel(deploy);
    expect([r.statusCode, r.json().code, r.json().task_state]).toEqual([409, 'not_cancellable', 'succeeded']);
  });
});

describe('long-poll and task reads', () => {
  it('answers a command with Prefer: wait=N with 200 once its task is terminal, 202 if the wait ends first', async () => {
    const id = await h.enroll();
    const put = (target: string, prefer: string) => h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/provision`, headers: { prefer }, payload: { target } });
    let r = await whileAdvancing(put('manage', 'wait=5'));
    expect([r.statusCode, r.headers['preference-applied'], r.headers['retry-after']]).toEqual([200, 'wait=5', undefined]);
    expect(r.json()).toMatchObject({ action: 'manage', state: 'succeeded' });
    r = await put('provide', 'wait=0');
    expect([r.statusCode, r.headers['preference-applied'], r.json().state]).toEqual([202, 'wait=0', 'running']);
  });

  it('shows a running task with 202 and Retry-After, a finished one with 200, and long-polls it', async () => {
    const id = await h.enroll();
    const task = (await h.provision(id, 'manage')).json().id;
    await h.settle();
    let r = await h.req({ method: 'GET', url: `/v1/tasks/${task}` });
    expect([r.statusCode, r.headers['retry-after']]).toEqual([202, expect.stringMatching(/^\d+$/)]);
    expect(r.json()).toMatchObject({ id: task, state: 'running', resource_type: 'node', resource_id: id, requested_by: expect.any(String) });
    r = await whileAdvancing(h.req({ method: 'GET', url: `/v1/tasks/${task}`, headers: { prefer: 'wait=5' } }));
    expect([r.statusCode, r.headers['preference-applied']]).toEqual([200, 'wait=5']);
    expect(r.json()).toMatchObject({ state: 'succeeded', finished_at: expect.any(String) });
    r = await h.req({ method: 'GET', url: `/v1/tasks/${task}` });
    expect([r.statusCode, r.headers['retry-after']]).toEqual([200, undefined]);
  });

  it('lists tasks newest first, filtered by resource_id, state and action', async () => {
    const a = await h.enroll();
    const b = await h.enroll({ driver_info: { fake_verify: 'fail' } });
    const aManage = (await h.provision(a, 'manage')).json().id;
    await h.driveUntil(a, 'manageable');
    const aProvide = (await h.provision(a, 'provide')).json().id;
    await h.driveUntil(a, 'available');
    const bManage = (await h.provision(b, 'manage')).json().id;
    await h.driveUntil(b, 'enroll');
    await h.settle();
    const ids = async (q: string): Promise<string[]> => {
      const r = await h.req({ method: 'GET', url: `/v1/tasks?${q}` });
      expect(r.statusCode).toBe(200);
      return r.json().items.map((t: Json) => t.id);
    };
    expect(await ids(`resource_id=${a}`)).toEqual([aProvide, aManage]);
    expect(await ids('state=failed')).toEqual([bManage]);
    expect(await ids('action=manage')).toEqual([bManage, aManage]);
    expect(await ids(`action=manage&resource_id=${b}&state=failed`)).toEqual([bManage]);
    expect(await ids('')).toEqual([bManage, aProvide, aManage]);
    const page = await h.req({ method: 'GET', url: '/v1/tasks?limit=2' });
    expect(page.json().items).toHaveLength(2);
    expect(page.json().next_cursor).toEqual(expect.any(String));
  });
});

describe('maintenance, history and introspection', () => {
  it('sets and clears maintenance, answering with the node view', async () => {
    const id = await available();
    let r = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: { reason: 'fan replacement' } });
    expect([r.statusCode, r.headers['ironclad-position']]).toEqual([200, expect.stringMatching(/^\d+$/)]);
    expect(r.json()).toMatchObject({ id, maintenance: true, maintenance_reason: 'fan replacement', provision_state: 'available', fault: null });
    r = await h.req({ method: 'DELETE', url: `/v1/nodes/${id}/maintenance` });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ maintenance: false, maintenance_reason: null, allowed_actions: ['active', 'deploy', 'manage'] });
  });

  it('replays every revision to the state the node had right after that event', async () => {
    const { id } = await waiting();
    await heartbeat(id, 'resume');
    await h.driveUntil(id, 'active');
    await power(id, 'power off');
    await h.driveUntil(id, 'active');
    await h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance` });
    await h.req({ method: 'DELETE', url: `/v1/nodes/${id}/maintenance` });
    await h.provision(id, 'undeploy');
    const live = await h.driveUntil(id, 'available');
    const events = await history(id);
    expect(events.map((e) => e.revision)).toEqual(events.map((_, i) => i));
    let expected = 'enroll';
    for (const e of events) {
      if (typeof e.data.to === 'string') expected = e.data.to;
      const r = await h.req({ method: 'GET', url: `/v1/nodes/${id}/history/${e.revision}` });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ revision: e.revision, event: e, state: expect.objectContaining({ provision_state: expected, revision: e.revision }) });
    }
    const last = (await h.req({ method: 'GET', url: `/v1/nodes/${id}/history/${events.length - 1}` })).json();
    expect(last.state).toEqual(live);
    expect((await h.req({ method: 'GET', url: `/v1/nodes/${id}/history/${events.length}` })).statusCode).toBe(404);
    const paged = await h.req({ method: 'GET', url: `/v1/nodes/${id}/history?from_revision=2&limit=3` });
    expect(paged.json().items.map((e: Json) => e.revision)).toEqual([2, 3, 4]);
    expect(paged.json().next_cursor).toBe('5');
  });

  it('describes the node machine: 30 states and 93 transitions', async () => {
    const r = await h.req({ method: 'GET', url: '/v1/machines/node' });
    expect(r.statusCode).toBe(200);
    const m = r.json();
    expect(m.states).toHaveLength(30);
    expect(m.transitions).toHaveLength(93);
    expect(m.states).toEqual(expect.arrayContaining([{ name: 'wait call-back', stable: false }, { name: 'active', stable: true }]));
    expect(m.transitions).toContainEqual({ from: 'deploy hold', event: 'unhold', to: 'wait call-back' });
    expect(m.api_verbs).toMatchObject({ deploy: 'deploy', active: 'deploy', undeploy: 'delete', deleted: 'delete', manage: 'manage' });
  });

  it('serves /healthz, /readyz, /openapi.json and /docs', async () => {
    expect((await h.req({ method: 'GET', url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await h.req({ method: 'GET', url: '/readyz' });
    expect([ready.statusCode, ready.json().status]).toEqual([200, 'ready']);
    const spec = await h.req({ method: 'GET', url: '/openapi.json' });
    expect(spec.statusCode).toBe(200);
    expect(Object.keys(spec.json().paths)).toEqual(expect.arrayContaining([
      '/v1/nodes', '/v1/nodes/{id}', '/v1/nodes/{id}/states/provision', '/v1/nodes/{id}/states/power', '/v1/nodes/{id}/maintenance',
      '/v1/nodes/{id}/history', '/v1/nodes/{id}/history/{revision}', '/v1/heartbeat/{id}', '/v1/tasks', '/v1/tasks/{id}', '/v1/tasks/{id}/cancel', '/v1/machines/{kind}',
    ]));
    const docs = await h.req({ method: 'GET', url: '/docs' });
    expect([docs.statusCode, docs.headers['content-type']]).toEqual([200, expect.stringMatching(/^text\/html/)]);
  });
});
