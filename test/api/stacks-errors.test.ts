/** Every 4xx of the stack routes: status, `code` and the body naming what is wrong. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';
import { STACK_ENV, testTemplate } from '../support/stack-api.js';

const TOKENS = 'adm=ops:admin,mem=acme:member,rdr=acme:reader,oth=globex:member';

describe('stack API errors', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness({ ...STACK_ENV, IRONCLAD_TOKENS: TOKENS });
  });
  afterEach(async () => h.close());

  const post = (payload: unknown, token = 'mem', headers: Record<string, string> = {}) =>
    h.req({ method: 'POST', url: '/v1/stacks', payload: payload as never, token, headers });

  async function created(name: string, resources: Record<string, Record<string, unknown>> = { a: {} }, token = 'mem') {
    const r = await post({ name, template: testTemplate(resources) }, token);
    expect(r.statusCode, r.body).toBe(202);
    return r.json() as { stack: { id: string }; task: { id: string } };
  }

  describe('400 template validation names the problem', () => {
    it('a dependency cycle', async () => {
      const b = expectProblem(await post({ name: 's', template: testTemplate({ a: { depends_on: ['c'] }, b: { value: { get_resource: 'a' } }, c: { depends_on: ['b'] } }) }), 400, 'validation_failed');
      expect(b.errors).toContainEqual({ path: 'body.template.resources.a', message: 'dependency cycle: a → c → b → a' });
      expect(b.detail).toContain('dependency cycle');
    });

    it('an unknown resource type', async () => {
      const b = expectProblem(await post({ name: 's', template: { resources: { a: { type: 'OS::Nova::Server' } } } }), 400, 'validation_failed');
      expect(b.errors).toEqual([{ path: 'body.template.resources.a.type', message: expect.stringContaining('unknown resource type "OS::Nova::Server"') }]);
    });

    it('dangling references and depends_on', async () => {
      const b = expectProblem(await post({ name: 's', template: testTemplate({ a: { depends_on: ['ghost'], value: { get_attr: ['nope', 'output'] } } }) }), 400, 'validation_failed');
      expect(b.errors).toEqual(expect.arrayContaining([
        { path: 'body.template.resources.a.depends_on.0', message: 'depends on unknown resource "ghost"' },
        { path: 'body.template.resources.a.properties.value.get_attr', message: 'get_attr refers to unknown resource "nope"' },
      ]));
    });

    it('a bad property and an unknown property', async () => {
      const b = expectProblem(await post({ name: 's', template: testTemplate({ a: { fail_on: ['explode'], colour: 'red' } }) }), 400, 'validation_failed');
      const paths = b.errors.map((e: { path: string }) => e.path);
      expect(paths).toEqual(expect.arrayContaining(['body.template.resources.a.properties.fail_on.0', 'body.template.resources.a.properties.colour']));
    });

    it('an unknown attribute', async () => {
      const b = expectProblem(await post({ name: 's', template: testTemplate({ a: {}, b: { value: { get_attr: ['a', 'ip'] } } }) }), 400, 'validation_failed');
      expect(b.errors[0].message).toContain('has no attribute "ip"');
    });

    it('a template string that is not YAML', async () => {
      const b = expectProblem(await post({ name: 's', template: 'resources: [unclosed' }), 400, 'validation_failed');
      expect(b.errors[0]).toMatchObject({ path: 'body.template', message: expect.stringContaining('not valid JSON or YAML') });
    });

    it('bad request fields (every one listed)', async () => {
      const b = expectProblem(await post({ template: {}, timeout_s: 0, extra: 1 }), 400, 'validation_failed');
      const paths = b.errors.map((e: { path: string }) => e.path);
      expect(paths).toEqual(expect.arrayContaining(['body.name', 'body.timeout_s', 'body.extra']));
    });

    it('an update with a bad template', async () => {
      const { stack } = await created('upd');
      const b = expectProblem(await h.req({ method: 'PUT', url: `/v1/stacks/${stack.id}`, payload: { template: testTemplate({ a: { depends_on: ['a'] } }) }, token: 'mem' }), 400, 'validation_failed');
      expect(b.errors[0].message).toBe('dependency cycle: a → a');
    });
  });

  describe('400 bodies', () => {
    it('malformed YAML body → malformed_body', async () => {
      const b = expectProblem(await post('name: [x', 'mem', { 'content-type': 'application/yaml' }), 400, 'malformed_body');
      expect(b.detail).toContain('not valid YAML');
    });

    it('an unsupported content type → malformed_body', async () => {
      const b = expectProblem(await post('name=x', 'mem', { 'content-type': 'application/x-www-form-urlencoded' }), 400, 'malformed_body');
      expect(b.detail).toContain('Unsupported Content-Type');
    });

    it('YAML bodies are accepted only by the stack routes', async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: 'driver: fake\nresource_class: x\n', headers: { 'content-type': 'application/yaml' }, token: 'mem' });
      expectProblem(r, 400, 'malformed_body');
    });

    it('an unknown stack action → unknown_action naming the known ones', async () => {
      const { stack } = await created('act');
      const b = expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/actions`, payload: { action: 'suspend' }, token: 'mem' }), 400, 'unknown_action');
      expect(b.errors).toEqual([{ path: 'body.action', message: 'must be one of: cancel_update, rollback' }]);
    });

    it('a bad signal body', async () => {
      const { stack } = await created('sig');
      const b = expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/resources/a/signal`, payload: { status: 'done' }, token: 'mem' }), 400, 'validation_failed');
      expect(b.errors[0].path).toBe('body.status');
    });
  });

  describe('tenancy', () => {
    it('404 for an unknown stack and for another tenant\'s stack, on every route', async () => {
      const { stack } = await created('mine');
      for (const id of [stack.id, 'mine', '00000000-0000-4000-8000-999999999999']) {
        const who = id === '00000000-0000-4000-8000-999999999999' ? 'mem' : 'oth';
        for (const [method, url, payload] of [
          ['GET', `/v1/stacks/${id}`, undefined],
          ['PUT', `/v1/stacks/${id}`, { template: testTemplate({ a: {} }) }],
          ['DELETE', `/v1/stacks/${id}`, undefined],
          ['POST', `/v1/stacks/${id}/actions`, { action: 'rollback' }],
          ['POST', `/v1/stacks/${id}/resources/a/signal`, { status: 'complete' }],
          ['GET', `/v1/stacks/${id}/history`, undefined],
          ['GET', `/v1/stacks/${id}/history/0`, undefined],
        ] as const) {
          const r = await h.req({ method, url, ...(payload ? { payload } : {}), token: who });
          expectProblem(r, 404, 'not_found');
        }
      }
      const list = await h.req({ method: 'GET', url: '/v1/stacks', token: 'oth' });
      expect(list.json().items).toEqual([]);
      expect((await h.req({ method: 'GET', url: '/v1/stacks', token: 'adm' })).json().items.map((s: any) => s.owner)).toEqual(['acme']);
    });

    it('403 for a reader on every command, 200 on reads', async () => {
      const { stack } = await created('ro');
      expectProblem(await post({ name: 'x', template: testTemplate({ a: {} }) }, 'rdr'), 403, 'forbidden');
      expectProblem(await h.req({ method: 'PUT', url: `/v1/stacks/${stack.id}`, payload: { template: testTemplate({ a: {} }) }, token: 'rdr' }), 403, 'forbidden');
      expectProblem(await h.req({ method: 'DELETE', url: `/v1/stacks/${stack.id}`, token: 'rdr' }), 403, 'forbidden');
      expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/actions`, payload: { action: 'cancel_update' }, token: 'rdr' }), 403, 'forbidden');
      expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/resources/a/signal`, payload: { status: 'complete' }, token: 'rdr' }), 403, 'forbidden');
      expect((await h.req({ method: 'GET', url: `/v1/stacks/${stack.id}`, token: 'rdr' })).statusCode).toBe(200);
    });

    it('403 for a member sending owner; an admin creates in another tenant', async () => {
      expectProblem(await post({ name: 'x', owner: 'globex', template: testTemplate({ a: {} }) }), 403, 'forbidden');
      const r = await post({ name: 'for-globex', owner: 'globex', template: testTemplate({ a: {} }) }, 'adm');
      expect(r.statusCode, r.body).toBe(202);
      expect(r.json().stack.owner).toBe('globex');
      expect(r.json().task.resource_type).toBe('stack');
      expect((await h.stack('for-globex', 'oth')).owner).toBe('globex');
      expect((await h.task(r.json().task.id, 'oth')).resource_id).toBe(r.json().stack.id);
    });
  });

  describe('409', () => {
    it('name_conflict for a taken name of the same tenant (another tenant may use it)', async () => {
      await created('dup');
      expectProblem(await post({ name: 'dup', template: testTemplate({ a: {} }) }), 409, 'name_conflict');
      expect((await post({ name: 'dup', template: testTemplate({ a: {} }) }, 'oth')).statusCode).toBe(202);
    });

    it('not_cancellable for POST /v1/tasks/{id}/cancel on a stack task, naming the stack action to use', async () => {
      const { stack, task } = await created('held', { a: { hold_on: ['create'] } });
      const b = expectProblem(await h.req({ method: 'POST', url: `/v1/tasks/${task.id}/cancel`, token: 'mem' }), 409, 'not_cancellable');
      expect(b.detail).toContain(`POST /v1/stacks/${stack.id}/actions`);
      expect(b.detail).toContain('cancel_update');
    });

    it('invalid_state where the stack machine refuses, with current_state and allowed_actions', async () => {
      const { stack, task } = await created('st');
      await h.finishTask(task.id, { token: 'mem' });
      let b = expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/actions`, payload: { action: 'rollback' }, token: 'mem' }), 409, 'invalid_state');
      expect(b).toMatchObject({ current_state: 'CREATE_COMPLETE', allowed_actions: ['delete', 'update'] });
      b = expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/actions`, payload: { action: 'cancel_update' }, token: 'mem' }), 409, 'invalid_state');
      expect(b.detail).toContain('cancel_update is not allowed');
      b = expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/resources/a/signal`, payload: { status: 'complete' }, token: 'mem' }), 409, 'invalid_state');
      expect(b.detail).toContain('not waiting for a signal');
      expectProblem(await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/resources/zz/signal`, payload: { status: 'complete' }, token: 'mem' }), 404, 'not_found');

      const del = await h.req({ method: 'DELETE', url: `/v1/stacks/${stack.id}`, token: 'mem' });
      await h.finishTask(del.json().id, { token: 'mem' });
      b = expectProblem(await h.req({ method: 'PUT', url: `/v1/stacks/${stack.id}`, payload: { template: testTemplate({ a: {} }) }, token: 'mem' }), 409, 'invalid_state');
      expect(b).toMatchObject({ current_state: 'DELETE_COMPLETE', allowed_actions: [] });
      expectProblem(await h.req({ method: 'DELETE', url: `/v1/stacks/${stack.id}`, token: 'mem' }), 409, 'invalid_state');
    });

    it('no update while a delete runs', async () => {
      const { stack } = await created('deleting', { a: { hold_on: ['delete'] } });
      await h.finishTask((await h.req({ method: 'GET', url: `/v1/tasks?resource_id=${stack.id}`, token: 'mem' })).json().items[0].id, { token: 'mem' });
      const del = await h.req({ method: 'DELETE', url: `/v1/stacks/${stack.id}`, token: 'mem' });
      expect(del.statusCode).toBe(202);
      const b = expectProblem(await h.req({ method: 'PUT', url: `/v1/stacks/${stack.id}`, payload: { template: testTemplate({ a: {} }) }, token: 'mem' }), 409, 'invalid_state');
      expect(b.current_state).toBe('DELETE_IN_PROGRESS');
      // A second delete is the same delete (coalesced), not a conflict.
      const again = await h.req({ method: 'DELETE', url: `/v1/stacks/${stack.id}`, token: 'mem' });
      expect(again.statusCode).toBe(202);
      expect(again.json()).toMatchObject({ id: del.json().id, coalesced: true });
    });
  });

  it('405 with Allow for a method a stack path does not take', async () => {
    const r = await h.req({ method: 'PATCH', url: '/v1/stacks/x', payload: {}, token: 'mem' });
    expectProblem(r, 405, 'method_not_allowed');
    expect(String(r.headers['allow']).split(', ').sort()).toEqual(['DELETE', 'GET', 'HEAD', 'PUT']);
  });

  it('404 for a history revision past the end and an unknown machine', async () => {
    const { stack } = await created('h');
    expectProblem(await h.req({ method: 'GET', url: `/v1/stacks/${stack.id}/history/9999`, token: 'mem' }), 404, 'not_found');
    expectProblem(await h.req({ method: 'GET', url: '/v1/machines/volcano', token: 'mem' }), 404, 'not_found');
  });
});
