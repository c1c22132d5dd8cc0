/**
 * Convergence through the API: requests that overlap (hold_on + signal make them reproducible),
 * failures with and without rollback, the durable timeout and cancel_update.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';
import { actionLog, expectBefore, physicalIds, STACK_ENV, testTemplate } from '../support/stack-api.js';
import { waitFor } from '../support/wait-for.js';

describe('stack convergence through the API', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(STACK_ENV);
  });
  afterEach(async () => h.close());

  async function create(name: string, template: unknown, extra: Record<string, unknown> = {}) {
    const r = await h.createStack({ name, template, ...extra });
    expect(r.statusCode, r.body).toBe(202);
    return { id: r.json().stack.id as string, taskId: r.json().task.id as string };
  }
  const put = async (id: string, template: unknown, extra: Record<string, unknown> = {}) => {
    const r = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, payload: { template, ...extra } });
    expect(r.statusCode, r.body).toBe(202);
    return r.json().id as string;
  };
  const signal = async (id: string, name: string, status = 'complete', reason?: string) => {
    const r = await h.req({ method: 'POST', url: `/v1/stacks/${id}/resources/${name}/signal`, payload: { status, ...(reason ? { reason } : {}) } });
    expect(r.statusCode, r.body).toBe(200);
    return r.json();
  };
  /** Waits until the named resource's newest action is held (the worker finished, the signal is awaited). */
  const held = (id: string, name: string, status: string) => waitFor(async () => {
    const s = await h.stack(id);
    return s.resources.some((r: any) => r.name === name && r.status === status && r.status_reason === 'Waiting for signal');
  }, { what: `${name} held in ${status}` });
  const live = (s: Record<string, any>) => s.resources.filter((r: any) => r.status !== 'DELETE_COMPLETE');

  it('update during create converges to the newest template; the create task ends cancelled', async () => {
    const { id, taskId } = await create('udc', testTemplate({ a: { value: 1, hold_on: ['create'] }, b: { value: { get_attr: ['a', 'output'] } } }));
    await held(id, 'a', 'CREATE_IN_PROGRESS');
    const upd = await put(id, testTemplate({ a: { value: 2 }, b: { value: { get_attr: ['a', 'output'] } }, c: { value: 'new' } }));
    expect(await h.task(taskId)).toMatchObject({ state: 'cancelled', error: { code: 'cancelled' } });
    expect((await h.stack(id)).status).toBe('UPDATE_IN_PROGRESS');
    await signal(id, 'a');
    expect((await h.finishTask(upd)).state).toBe('succeeded');
    const s = await h.stack(id);
    expect(s.status).toBe('UPDATE_COMPLETE');
    expect(Object.fromEntries(s.resources.map((r: any) => [r.name, r.attributes.output]))).toEqual({ a: 2, b: 2, c: 'new' });
    const log = await actionLog(h, id);
    expectBefore(log, 'CREATE', 'a', 'b'); // b was never built from the old template's a=1
    expect(log.filter((x) => x.name === 'b' && x.event === 'started').map((x) => x.action)).toEqual(['CREATE']);
  });

  it('update during update converges to the newest template', async () => {
    const { id, taskId } = await create('udu', testTemplate({ a: { value: 1 }, b: { value: { get_attr: ['a', 'output'] } } }));
    await h.finishTask(taskId);
    const ids = physicalIds(await h.stack(id));
    const first = await put(id, testTemplate({ a: { value: 2, hold_on: ['update'] }, b: { value: { get_attr: ['a', 'output'] } } }));
    await held(id, 'a', 'UPDATE_IN_PROGRESS');
    const second = await put(id, testTemplate({ a: { value: 3 }, b: { value: { get_attr: ['a', 'output'] } } }));
    await signal(id, 'a');
    expect((await h.finishTask(second)).state).toBe('succeeded');
    expect((await h.task(first)).state).toBe('cancelled');
    const s = await h.stack(id);
    expect(s.status).toBe('UPDATE_COMPLETE');
    expect(Object.fromEntries(s.resources.map((r: any) => [r.name, r.attributes.output]))).toEqual({ a: 3, b: 3 });
    expect(physicalIds(s)).toEqual(ids); // all in place
  });

  it('delete during create removes everything that was built, in reverse order', async () => {
    const { id, taskId } = await create('ddc', testTemplate({ a: {}, b: { depends_on: ['a'], hold_on: ['create'] }, c: { depends_on: ['b'] } }));
    await held(id, 'b', 'CREATE_IN_PROGRESS');
    const del = await h.req({ method: 'DELETE', url: `/v1/stacks/${id}` });
    expect(del.statusCode).toBe(202);
    expect((await h.task(taskId)).state).toBe('cancelled');
    await signal(id, 'b');
    expect((await h.finishTask(del.json().id)).state).toBe('succeeded');
    expect(await h.stack(id)).toMatchObject({ status: 'DELETE_COMPLETE', resources: [] });
    const log = await actionLog(h, id);
    expect(log.filter((x) => x.name === 'c')).toEqual([]); // never built, never deleted
    expectBefore(log, 'DELETE', 'b', 'a');
  });

  it('a failure without rollback ends CREATE_FAILED with the resource\'s reason', async () => {
    const { id, taskId } = await create('fail', testTemplate({ a: {}, b: { depends_on: ['a'], fail_on: ['create'] }, c: { depends_on: ['b'] } }));
    const t = await h.finishTask(taskId);
    const reason = 'Resource CREATE failed: resources.b: b refused to create (fail_on)';
    expect(t).toMatchObject({ state: 'failed', error: { code: 'resource_failed', message: reason } });
    const s = await h.stack(id);
    expect(s).toMatchObject({ status: 'CREATE_FAILED', status_reason: reason });
    expect(s.allowed_actions).toEqual(['delete', 'rollback', 'update']);
    const byName = Object.fromEntries(s.resources.map((r: any) => [r.name, r]));
    expect(byName['a'].status).toBe('CREATE_COMPLETE');
    expect(byName['b']).toMatchObject({ status: 'CREATE_FAILED', status_reason: 'b refused to create (fail_on)' });
    expect(byName['c'].status).toBe('INIT_COMPLETE');
  });

  it('a failure with rollback restores the original physical ids', async () => {
    const good = testTemplate({ a: { value: 1 }, b: { value: { get_resource: 'a' }, replace_key: 1 } });
    const { id, taskId } = await create('rb', good);
    await h.finishTask(taskId);
    const original = physicalIds(await h.stack(id));
    const bad = testTemplate({ a: { value: 2 }, b: { value: { get_resource: 'a' }, replace_key: 2 }, c: { depends_on: ['b'], fail_on: ['create'] } });
    const upd = await put(id, bad, { rollback_on_failure: true });
    const t = await h.finishTask(upd);
    expect(t).toMatchObject({ state: 'failed', error: { code: 'resource_failed' } });
    expect(t.error.message).toContain('resources.c');
    const s = await h.stack(id);
    expect(s.status).toBe('ROLLBACK_COMPLETE');
    expect(live(s).map((r: any) => r.name).sort()).toEqual(['a', 'b']);
    expect(physicalIds(s)).toEqual(original);
    expect(Object.fromEntries(s.resources.map((r: any) => [r.name, r.attributes.output]))).toEqual({ a: 1, b: original['a'] });
    const log = await actionLog(h, id);
    // b's replacement was created, then deleted by the rollback; the original b was never deleted.
    const replacement = log.find((x) => x.event === 'completed' && x.action === 'CREATE' && x.name === 'b' && x.physical_id !== original['b'])!;
    expect(replacement).toBeDefined();
    expect(log.some((x) => x.event === 'completed' && x.action === 'DELETE' && x.physical_id === replacement.physical_id)).toBe(true);
    expect(log.some((x) => x.action === 'DELETE' && x.physical_id === original['b'])).toBe(false);
  });

  it('the stack timeout fails the operation (durable timer on the fake clock)', async () => {
    const { id, taskId } = await create('slow', testTemplate({ a: { create_delay_ms: 3_600_000 }, b: { depends_on: ['a'] } }), { timeout_s: 60 });
    const t = await h.finishTask(taskId, { stepMs: 5000 });
    expect(t).toMatchObject({ state: 'failed', error: { code: 'deadline_expired', message: 'Timed out' } });
    const s = await h.stack(id);
    expect(s).toMatchObject({ status: 'CREATE_FAILED', status_reason: 'Timed out' });
    expect(s.resources.find((r: any) => r.name === 'b').status).toBe('INIT_COMPLETE');
  });

  it('cancel_update stops a create: CREATE_FAILED "Stack CREATE cancelled"; the in-flight action still finishes', async () => {
    const { id, taskId } = await create('cancel', testTemplate({ a: { hold_on: ['create'] }, b: { depends_on: ['a'] } }));
    await held(id, 'a', 'CREATE_IN_PROGRESS');
    const r = await h.req({ method: 'POST', url: `/v1/stacks/${id}/actions`, payload: { action: 'cancel_update' } });
    expect(r.statusCode, r.body).toBe(202);
    expect(r.json()).toMatchObject({ action: 'cancel_update', resource_type: 'stack' });
    expect((await h.finishTask(r.json().id)).state).toBe('succeeded');
    expect(await h.task(taskId)).toMatchObject({ state: 'cancelled', error: { code: 'cancelled' } });
    expect(await h.stack(id)).toMatchObject({ status: 'CREATE_FAILED', status_reason: 'Stack CREATE cancelled' });
    await signal(id, 'a');
    await waitFor(async () => (await h.stack(id)).resources.find((x: any) => x.name === 'a').status === 'CREATE_COMPLETE', { what: 'a completes' });
    const s = await h.stack(id);
    expect(s.status).toBe('CREATE_FAILED');
    expect(s.resources.find((x: any) => x.name === 'b').status).toBe('INIT_COMPLETE'); // nothing new started
  });

  it('cancel_update with rollback_on_failure rolls a first create back to nothing', async () => {
    const { id } = await create('cancel-rb', testTemplate({ a: {}, b: { depends_on: ['a'], hold_on: ['create'] } }), { rollback_on_failure: true });
    await held(id, 'b', 'CREATE_IN_PROGRESS');
    const r = await h.req({ method: 'POST', url: `/v1/stacks/${id}/actions`, payload: { action: 'cancel_update' } });
    expect(r.statusCode).toBe(202);
    await signal(id, 'b');
    expect((await h.finishTask(r.json().id)).state).toBe('succeeded');
    const s = await h.stack(id);
    expect(s.status).toBe('ROLLBACK_COMPLETE');
    expect(live(s)).toEqual([]);
  });

  it('rollback after a failed update goes back to the last good template', async () => {
    const { id, taskId } = await create('manual-rb', testTemplate({ a: { value: 1 } }));
    await h.finishTask(taskId);
    const original = physicalIds(await h.stack(id));
    const upd = await put(id, testTemplate({ a: { value: 2, fail_on: ['update'] } }));
    expect((await h.finishTask(upd)).state).toBe('failed');
    expect((await h.stack(id)).status).toBe('UPDATE_FAILED');
    const r = await h.req({ method: 'POST', url: `/v1/stacks/${id}/actions`, payload: { action: 'rollback' } });
    expect(r.statusCode, r.body).toBe(202);
    expect((await h.finishTask(r.json().id)).state).toBe('succeeded');
    const s = await h.stack(id);
    expect(s.status).toBe('ROLLBACK_COMPLETE');
    expect(physicalIds(s)).toEqual(original);
    expect(s.resources[0].attributes).toEqual({ output: 1 });
  });

  it('a signal "fail" fails the held action with its reason', async () => {
    const { id, taskId } = await create('sigfail', testTemplate({ a: { hold_on: ['create'] } }));
    await held(id, 'a', 'CREATE_IN_PROGRESS');
    await signal(id, 'a', 'fail', 'operator said no');
    const t = await h.finishTask(taskId);
    expect(t.error.message).toBe('Resource CREATE failed: resources.a: operator said no');
    expect((await h.stack(id)).status).toBe('CREATE_FAILED');
  });
});
