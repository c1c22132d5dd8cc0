/**
 * Every 4xx answer of api.md that applies to nodes: status, RFC 9457 body (type, title, status,
 * code, detail and the documented extensions) and headers. Also list filters and pagination.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';

/** Asserts an RFC 9457 answer with `code` and returns its body. */

const paths = (b: Record<string, any>): string[] => (b['errors'] as { path: string }[]).map((e) => e.path).sort();

describe('node API errors', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness();
  });
  afterEach(async () => h.close());

  /** Enrolls a node and drives it to `available`. */
  async function available(body: Record<string, unknown> = {}): Promise<string> {
    const id = await h.enroll(body);
    await h.provision(id, 'manage');
    await h.driveUntil(id, 'manageable');
    await h.provision(id, 'provide');
    await h.driveUntil(id, 'available');
    return id;
  }

  /** A node in `deploying` whose deploy will not finish unless the clock moves 10 s. */
  async function deploying(): Promise<{ id: string; task: string }> {
    const id = await available({ driver_info: { fake_deploy_ms: 10_000 } });
    const r = await h.provision(id, 'deploy');
    expect(r.statusCode).toBe(202);
    return { id, task: r.json().id };
  }

  describe('400 validation_failed', () => {
    it('lists every bad field at once: wrong types, unknown fields and nested ones', async () => {
      const r = await h.req({
        method: 'POST', url: '/v1/nodes',
        payload: { driver: 'bogus', resource_class: 5, properties: { cpus: 'many' }, traits: 'gpu', foo: 1, bar: { x: 1 } },
      });
      const b = expectProblem(r, 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.bar', 'body.driver', 'body.foo', 'body.properties.cpus', 'body.resource_class', 'body.traits']);
      for (const e of b['errors']) expect(e.message).toEqual(expect.stringMatching(/\S/));
      expect(b['errors'].find((e: any) => e.path === 'body.foo').message).toMatch(/unknown/i);
      expect(b['detail']).toContain('body.foo');
    });

    it('names every missing required field', async () => {
      const b = expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload: {} }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.driver', 'body.resource_class']);
    });

    it('requires the ipmi credentials when the driver is ipmi', async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'ipmi', resource_class: 'x', driver_info: { ipmi_address: '10.0.0.1' } } });
      const b = expectProblem(r, 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.driver_info.ipmi_password', 'body.driver_info.ipmi_username']);
    });

    it('rejects unknown fields and bad values in provision, power, patch and heartbeat bodies', async () => {
      const id = await h.enroll();
      let b = expectProblem(await h.provision(id, 'manage', { on_busy: 'later', foo: true }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.foo', 'body.on_busy']);
      b = expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target: 'power sideways', timeout: -1 } }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.target', 'body.timeout']);
      b = expectProblem(await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { owner: 'x', traits: [1] } }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.owner', 'body.traits.0']);
      b = expectProblem(await h.req({ method: 'POST', url: `/v1/heartbeat/${id}`, payload: { status: 'maybe' } }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.status']);
    });

    it('rejects bad query parameters, naming them', async () => {
      let b = expectProblem(await h.req({ method: 'GET', url: '/v1/nodes?limit=0' }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['querystring.limit']);
      b = expectProblem(await h.req({ method: 'GET', url: '/v1/nodes?maintenance=maybe&limit=1001&colour=red' }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['querystring.colour', 'querystring.limit', 'querystring.maintenance']);
      b = expectProblem(await h.req({ method: 'GET', url: '/v1/tasks?state=done' }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['querystring.state']);
    });

    it('rejects an If-Match that is not an ETag', async () => {
      const id = await h.enroll();
      const b = expectProblem(await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, headers: { 'if-match': 'yesterday' }, payload: {} }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['header.if-match']);
    });
  });

  describe('400 malformed_body and unknown_action, 413 payload_too_large', () => {
    it('answers malformed_body for invalid JSON', async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', headers: { 'content-type': 'application/json' }, payload: '{"driver": "fake",' });
      expect(expectProblem(r, 400, 'malformed_body')['detail']).toMatch(/JSON/);
    });

    it('answers malformed_body for an empty body sent as JSON', async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', headers: { 'content-type': 'application/json' }, payload: '' });
      expectProblem(r, 400, 'malformed_body');
    });

    it('answers unknown_action for a verb the machine does not have', async () => {
      const id = await h.enroll();
      const b = expectProblem(await h.provision(id, 'explode'), 400, 'unknown_action');
      expect(b['detail']).toContain('explode');
      expect(b['errors']).toEqual([{ path: expect.stringMatching(/target$/), message: expect.stringContaining('manage') }]);
    });

    it('answers payload_too_large above IRONCLAD_BODY_LIMIT', async () => {
      const small = await createHarness({ IRONCLAD_BODY_LIMIT: '2048' });
      try {
        const r = await small.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x', properties: { note: 'x'.repeat(4000) } } });
        expect(expectProblem(r, 413, 'payload_too_large')['detail']).toContain('2048');
        expect((await small.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' } })).statusCode).toBe(201);
      } finally {
        await small.close();
      }
    });
  });

  describe('404 not_found and 405 method_not_allowed', () => {
    it('answers not_found for an unknown id, an unknown name, a task and a route', async () => {
      for (const url of ['/v1/nodes/00000000-0000-4000-8000-999999999999', '/v1/nodes/no-such-node', '/v1/tasks/nope', '/v1/nope', '/v1/machines/toaster']) {
        const b = expectProblem(await h.req({ method: 'GET', url }), 404, 'not_found');
        expect(b['instance']).toBe(url);
      }
      expectProblem(await h.provision('no-such-node', 'manage'), 404, 'not_found');
      expectProblem(await h.req({ method: 'DELETE', url: '/v1/nodes/no-such-node' }), 404, 'not_found');
    });

    it('answers method_not_allowed with an Allow header', async () => {
      let r = await h.req({ method: 'DELETE', url: '/v1/tasks' });
      expectProblem(r, 405, 'method_not_allowed');
      expect(r.headers['allow']).toMatch(/\bGET\b/);
      expect(r.headers['allow']).not.toMatch(/DELETE/);
      r = await h.req({ method: 'PUT', url: '/v1/nodes' });
      expectProblem(r, 405, 'method_not_allowed');
      expect(String(r.headers['allow']).split(/,\s*/)).toEqual(expect.arrayContaining(['GET', 'POST']));
      r = await h.req({ method: 'POST', url: '/v1/nodes/some-node/states/provision' });
      expectProblem(r, 405, 'method_not_allowed');
      expect(r.headers['allow']).toMatch(/\bPUT\b/);
    });
  });

  describe('409 state conflicts', () => {
    it('refuses deploy from enroll with current_state and allowed_actions', async () => {
      const id = await h.enroll();
      const b = expectProblem(await h.provision(id, 'deploy'), 409, 'invalid_state');
      expect(b).toMatchObject({ current_state: 'enroll', allowed_actions: ['manage'] });
      expect(b['detail']).toContain('deploy');
    });

    it('answers node_busy with the blocking task for a second operation and for a PATCH', async () => {
      const { id, task } = await deploying();
      let b = expectProblem(await h.provision(id, 'undeploy'), 409, 'node_busy');
      expect(b['blocking_task']).toMatchObject({ id: task, action: 'deploy', state: 'running' });
      expect(b['current_state']).toBe('deploying');
      b = expectProblem(await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { resource_class: 'gpu' } }), 409, 'node_busy');
      expect(b['blocking_task']).toMatchObject({ id: task, action: 'deploy' });
      b = expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target: 'power off' } }), 409, 'node_busy');
      expect(b['blocking_task']).toMatchObject({ id: task });
    });

    it('refuses deploy in maintenance, and allowed_actions leaves out the refused verbs', async () => {
      const id = await available();
      const m = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: { reason: 'disk swap' } });
      expect(m.statusCode).toBe(200);
      expect(m.json().allowed_actions).toEqual(['manage']);
      const b = expectProblem(await h.provision(id, 'deploy'), 409, 'in_maintenance');
      expect(b).toMatchObject({ current_state: 'available', allowed_actions: ['manage'] });
      expectProblem(await h.provision(id, 'active'), 409, 'in_maintenance');
      expect((await h.provision(id, 'manage')).statusCode).toBe(202);
    });

    it('answers queue_full past IRONCLAD_QUEUE_DEPTH', async () => {
      await h.close();
      h = await createHarness({ IRONCLAD_QUEUE_DEPTH: '2' });
      const { id } = await deploying();
      const power = (target: string) => h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target, on_busy: 'queue' } });
      expect((await power('power on')).statusCode).toBe(202);
      expect((await power('power off')).statusCode).toBe(202);
      const b = expectProblem(await power('rebooting'), 409, 'queue_full');
      expect(b['detail']).toContain('2');
      expectProblem(await h.provision(id, 'rescue', { on_busy: 'queue' }), 409, 'queue_full');
      expect((await h.node(id)).queued_tasks.map((t: any) => t.action)).toEqual(['power on', 'power off']);
    });

    it('answers name_conflict on enroll and on rename to a taken name', async () => {
      await h.enroll({ name: 'alpha' });
      const other = await h.enroll({ name: 'beta' });
      const b = expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'alpha', driver: 'fake', resource_class: 'x' } }), 409, 'name_conflict');
      expect(b['detail']).toContain('alpha');
      expectProblem(await h.req({ method: 'PATCH', url: `/v1/nodes/${other}`, payload: { name: 'alpha' } }), 409, 'name_conflict');
      expect((await h.node(other)).name).toBe('beta');
      expect((await h.node('beta')).id).toBe(other);
    });

    it('refuses power commands in cleaning with invalid_state', async () => {
      const id = await h.enroll({ driver_info: { fake_clean_ms: 10_000 } });
      await h.provision(id, 'manage');
      await h.driveUntil(id, 'manageable');
      await h.provision(id, 'provide');
      expect((await h.node(id)).provision_state).toBe('cleaning');
      for (const target of ['power on', 'power off', 'rebooting']) {
        const b = expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target } }), 409, 'invalid_state');
        expect(b).toMatchObject({ current_state: 'cleaning', allowed_actions: [] });
      }
    });
  });

  describe('DELETE /v1/nodes/{id}', () => {
    it('deletes an available node (204), after which it is not found', async () => {
      const id = await available({ name: 'gone' });
      const r = await h.req({ method: 'DELETE', url: `/v1/nodes/${id}` });
      expect(r.statusCode).toBe(204);
      expect(r.body).toBe('');
      expectProblem(await h.req({ method: 'GET', url: `/v1/nodes/${id}` }), 404, 'not_found');
      // names resolve through the read model: read-your-writes with the DELETE's position
      const position = String(r.headers['ironclad-position']);
      expectProblem(await h.req({ method: 'GET', url: '/v1/nodes/gone', headers: { 'ironclad-position': position } }), 404, 'not_found');
      expect((await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'gone', driver: 'fake', resource_class: 'x' } })).statusCode).toBe(201);
    });

    it('refuses to delete an active node with invalid_state', async () => {
      const id = await available();
      await h.provision(id, 'deploy');
      await h.driveUntil(id, 'active');
      const b = expectProblem(await h.req({ method: 'DELETE', url: `/v1/nodes/${id}` }), 409, 'invalid_state');
      expect(b['current_state']).toBe('active');
      expect(b['allowed_actions']).toEqual(['deleted', 'rebuild', 'rescue', 'service', 'undeploy']);
    });

    it('deletes a node in any state while in maintenance, even mid-operation', async () => {
      const { id, task } = await deploying();
      expect((await h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance` })).statusCode).toBe(200);
      expect((await h.req({ method: 'DELETE', url: `/v1/nodes/${id}` })).statusCode).toBe(204);
      expectProblem(await h.req({ method: 'GET', url: `/v1/nodes/${id}` }), 404, 'not_found');
      expect((await h.task(task)).state).toBe('cancelled');
      h.clock.advance(20_000); // the orphaned driver step reports into a deleted node: ignored
      await h.settle();
      expectProblem(await h.req({ method: 'GET', url: `/v1/nodes/${id}` }), 404, 'not_found');
    });
  });

  describe('412 revision_mismatch and ETag', () => {
    it('serves the revision as ETag and refuses a PATCH with a stale If-Match', async () => {
      const created = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' } });
      expect(created.headers['etag']).toBe('"0"');
      expect(created.headers['location']).toBe(`/v1/nodes/${created.json().id}`);
      const id = created.json().id;
      let r = await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, headers: { 'if-match': '"0"' }, payload: { resource_class: 'gpu' } });
      expect(r.statusCode).toBe(200);
      expect(r.headers['etag']).toBe(`"${r.json().revision}"`);
      expect(r.json()).toMatchObject({ resource_class: 'gpu', revision: 1 });
      r = await h.req({ method: 'GET', url: `/v1/nodes/${id}` });
      expect(r.headers['etag']).toBe('"1"');
      const b = expectProblem(await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, headers: { 'if-match': '"0"' }, payload: { resource_class: 'cpu' } }), 412, 'revision_mismatch');
      expect(b['current_revision']).toBe(1);
      expect((await h.node(id)).resource_class).toBe('gpu');
    });
  });
});

describe('node API auth errors', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: 'tok-a=acme:member,tok-r=acme:reader,tok-b=beta:member' });
  });
  afterEach(async () => h.close());

  it('answers unauthorized without a valid token, forbidden for readers and owner, not_found across tenants', async () => {
    let r = await h.req({ method: 'GET', url: '/v1/nodes' });
    expectProblem(r, 401, 'unauthorized');
    expect(r.headers['www-authenticate']).toBe('Bearer');
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes', token: 'wrong' }), 401, 'unauthorized');
    const id = await h.enroll({ name: 'mine' }, 'tok-a');
    expect((await h.req({ method: 'GET', url: `/v1/nodes/${id}`, token: 'tok-r' })).statusCode).toBe(200);
    expectProblem(await h.provision(id, 'manage', {}, 'tok-r'), 403, 'forbidden');
    r = await h.req({ method: 'POST', url: '/v1/nodes', token: 'tok-a', payload: { driver: 'fake', resource_class: 'x', owner: 'beta' } });
    expectProblem(r, 403, 'forbidden');
    expectProblem(await h.req({ method: 'GET', url: `/v1/nodes/${id}`, token: 'tok-b' }), 404, 'not_found');
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes/mine', token: 'tok-b' }), 404, 'not_found');
    expectProblem(await h.provision(id, 'manage', {}, 'tok-b'), 404, 'not_found');
    expect((await h.req({ method: 'GET', url: '/v1/nodes', token: 'tok-b' })).json().items).toEqual([]);
  });
});

describe('node lists', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness();
  });
  afterEach(async () => h.close());

  const list = async (query: string): Promise<Record<string, any>> => {
    await h.settle();
    const r = await h.req({ method: 'GET', url: `/v1/nodes?${query}` });
    expect(r.statusCode, r.body).toBe(200);
    return r.json();
  };

  it('pages with limit and next_cursor until the cursor is null', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await h.enroll({ name: `n${i}` }));
    const seen: string[] = [];
    let page = await list('limit=2');
    expect(page.items).toHaveLength(2);
    for (;;) {
      seen.push(...page.items.map((n: any) => n.id));
      if (page.next_cursor === null) break;
      page = await list(`limit=2&cursor=${encodeURIComponent(page.next_cursor)}`);
    }
    expect(seen.sort()).toEqual(ids.sort());
    expect((await list('')).next_cursor).toBeNull();
  });

  it('filters by provision_state, resource_class, maintenance, name and has_pending', async () => {
    const a = await h.enroll({ name: 'a', resource_class: 'gpu' });
    const b = await h.enroll({ name: 'b', resource_class: 'cpu', driver_info: { fake_verify_ms: 10_000 } });
    const c = await h.enroll({ name: 'c', resource_class: 'gpu' });
    await h.provision(a, 'manage');
    await h.driveUntil(a, 'manageable');
    await h.provision(b, 'manage');
    await h.req({ method: 'PUT', url: `/v1/nodes/${c}/maintenance`, payload: { reason: 'x' } });
    const ids = async (q: string): Promise<string[]> => (await list(q)).items.map((n: any) => n.id).sort();
    expect(await ids('provision_state=manageable')).toEqual([a]);
    expect(await ids('provision_state=verifying')).toEqual([b]);
    expect(await ids('resource_class=gpu')).toEqual([a, c].sort());
    expect(await ids('maintenance=true')).toEqual([c]);
    expect(await ids('maintenance=false')).toEqual([a, b].sort());
    expect(await ids('name=b')).toEqual([b]);
    expect(await ids('has_pending=true')).toEqual([b]);
    expect(await ids('has_pending=false&resource_class=gpu')).toEqual([a, c].sort());
    expect(await ids('resource_class=gpu&maintenance=false')).toEqual([a]);
  });
});
