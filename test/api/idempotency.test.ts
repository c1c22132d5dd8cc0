/**
 * api.md "Idempotency": same key + same request → the original answer again with
 * `Idempotent-Replayed: true` and no second effect; same key + another request → 422; a key whose
 * request is still being processed → 409; keys are per tenant and expire after the retention.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';

const TOKENS = 'tok-a=acme:member,tok-a2=acme:member,tok-b=beta:member';
const RETENTION_S = 3600;


/** The replay is the first answer again: status, body and the headers a client acts on. */
function expectReplay(first: LightMyRequestResponse, again: LightMyRequestResponse): void {
  expect(again.statusCode, again.body).toBe(first.statusCode);
  expect(again.body).toBe(first.body);
  expect(again.headers['idempotent-replayed']).toBe('true');
  expect(first.headers['idempotent-replayed']).toBeUndefined();
  for (const h of ['location', 'etag', 'ironclad-position', 'content-type']) expect(again.headers[h], h).toEqual(first.headers[h]);
}

describe('Idempotency-Key', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS, IRONCLAD_IDEMPOTENCY_RETENTION_S: String(RETENTION_S) });
  });
  afterEach(async () => h.close());

  const key = (k: string): Record<string, string> => ({ 'idempotency-key': k });

  /** h.driveUntil with tenant a's token (the harness helper sends none). */
  async function driveUntil(id: string, state: string): Promise<Record<string, any>> {
    for (let i = 0; i < 400; i++) {
      const n = await h.node(id, 'tok-a');
      if (n['provision_state'] === state && n['current_task'] === null) return n;
      h.clock.advance(25);
      await new Promise((r) => setImmediate(r));
    }
    throw new Error(`node ${id} did not reach "${state}"`);
  }

  async function available(body: Record<string, unknown> = {}): Promise<string> {
    const id = await h.enroll(body, 'tok-a');
    expect((await h.provision(id, 'manage', {}, 'tok-a')).statusCode).toBe(202);
    await driveUntil(id, 'manageable');
    expect((await h.provision(id, 'provide', {}, 'tok-a')).statusCode).toBe(202);
    await driveUntil(id, 'available');
    return id;
  }

  async function tasksOf(id: string): Promise<any[]> {
    await h.settle();
    const r = await h.req({ method: 'GET', url: `/v1/tasks?resource_id=${id}`, token: 'tok-a' });
    expect(r.statusCode).toBe(200);
    return r.json().items;
  }

  async function nodeCount(token = 'tok-a'): Promise<number> {
    await h.settle();
    return (await h.req({ method: 'GET', url: '/v1/nodes', token })).json().items.length;
  }

  describe('same key, same request', () => {
    it('replays POST /v1/nodes: same node id, no second node', async () => {
      const payload = { name: 'n1', driver: 'fake', resource_class: 'baremetal', traits: ['a'] };
      const first = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('enroll-1'), token: 'tok-a' });
      expect(first.statusCode, first.body).toBe(201);
      // Same canonical body, keys in another order.
      const again = await h.req({ method: 'POST', url: '/v1/nodes', payload: { traits: ['a'], resource_class: 'baremetal', driver: 'fake', name: 'n1' }, headers: key('enroll-1'), token: 'tok-a' });
      expectReplay(first, again);
      expect(again.json().id).toBe(first.json().id);
      expect(again.headers['location']).toBe(`/v1/nodes/${first.json().id}`);
      expect(await nodeCount()).toBe(1);
    });

    it('replays PUT provision with the same task: one task exists', async () => {
      const id = await h.enroll({}, 'tok-a');
      const first = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/provision`, payload: { target: 'manage' }, headers: key('manage-1'), token: 'tok-a' });
      expect(first.statusCode, first.body).toBe(202);
      const again = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/provision`, payload: { target: 'manage' }, headers: key('manage-1'), token: 'tok-a' });
      expectReplay(first, again);
      expect(again.json().id).toBe(first.json().id);
      expect(again.headers['location']).toBe(`/v1/tasks/${first.json().id}`);
      const tasks = await tasksOf(id);
      expect(tasks.map((t) => t.id)).toEqual([first.json().id]);
      expect(tasks[0].idempotency_key).toBe('manage-1');

      // Still the stored answer after the task finished (not a fresh view, not a second manage).
      await driveUntil(id, 'manageable');
      const later = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/provision`, payload: { target: 'manage' }, headers: key('manage-1'), token: 'tok-a' });
      expectReplay(first, later);
      expect(later.json().state).toBe(first.json().state);
      expect((await tasksOf(id))).toHaveLength(1);
    });

    it('replays PUT power with the same task: one task exists', async () => {
      const id = await h.enroll({ driver_info: { fake_power_ms: 1_000 } }, 'tok-a');
      const req = { method: 'PUT' as const, url: `/v1/nodes/${id}/states/power`, payload: { target: 'power on' }, headers: key('power-1'), token: 'tok-a' };
      const first = await h.req(req);
      expect(first.statusCode, first.body).toBe(202);
      h.clock.advance(1_000);
      await waitFor(async () => (await h.task(first.json().id, 'tok-a')).state === 'succeeded');
      const again = await h.req(req);
      expectReplay(first, again);
      expect(again.json().id).toBe(first.json().id);
      expect((await tasksOf(id)).map((t) => t.id)).toEqual([first.json().id]);
      expect((await h.node(id, 'tok-a')).power_state).toBe('power on');
    });

    it('replays DELETE /v1/nodes/{id} as 204 instead of 404', async () => {
      const id = await h.enroll({}, 'tok-a');
      const first = await h.req({ method: 'DELETE', url: `/v1/nodes/${id}`, headers: key('del-1'), token: 'tok-a' });
      expect(first.statusCode, first.body).toBe(204);
      expect(first.body).toBe('');
      const again = await h.req({ method: 'DELETE', url: `/v1/nodes/${id}`, headers: key('del-1'), token: 'tok-a' });
      expect(again.statusCode).toBe(204);
      expect(again.body).toBe('');
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers['ironclad-position']).toBe(first.headers['ironclad-position']);
      // Without the key, the node is simply gone.
      expectProblem(await h.req({ method: 'DELETE', url: `/v1/nodes/${id}`, token: 'tok-a' }), 404, 'not_found');
    });

    it('replays PATCH with the stored node view and ETag, not the current one', async () => {
      const id = await h.enroll({ name: 'p1' }, 'tok-a');
      const req = { method: 'PATCH' as const, url: `/v1/nodes/${id}`, payload: { name: 'p2' }, headers: key('patch-1'), token: 'tok-a' };
      const first = await h.req(req);
      expect(first.statusCode, first.body).toBe(200);
      expect((await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { name: 'p3' }, token: 'tok-a' })).statusCode).toBe(200);
      const again = await h.req(req);
      expectReplay(first, again);
      expect(again.json().name).toBe('p2');
      expect((await h.node(id, 'tok-a')).name).toBe('p3');
    });

    it('replays a 400 validation answer as stored', async () => {
      const payload = { driver: 'bogus', resource_class: 'x', extra: 1 };
      const first = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('bad-1'), token: 'tok-a' });
      const b = expectProblem(first, 400, 'validation_failed');
      expect(b['errors'].map((e: any) => e.path).sort()).toEqual(['body.driver', 'body.extra']);
      const again = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('bad-1'), token: 'tok-a' });
      expectReplay(first, again);
      expect(again.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(await nodeCount()).toBe(0);
    });

    it('replays a 409 state error as stored, even once the state would allow the command', async () => {
      const id = await h.enroll({}, 'tok-a');
      const url = `/v1/nodes/${id}/states/provision`;
      const first = await h.req({ method: 'PUT', url, payload: { target: 'provide' }, headers: key('provide-1'), token: 'tok-a' });
      expectProblem(first, 409, 'invalid_state');
      expect((await h.provision(id, 'manage', {}, 'tok-a')).statusCode).toBe(202);
      await driveUntil(id, 'manageable');
      const again = await h.req({ method: 'PUT', url, payload: { target: 'provide' }, headers: key('provide-1'), token: 'tok-a' });
      expectReplay(first, again);
      expect((await h.node(id, 'tok-a')).provision_state).toBe('manageable');
    });
  });

  describe('same key, another request', () => {
    it('answers 422 idempotency_key_reused for a different body and does not act', async () => {
      const id = await h.enroll({}, 'tok-a');
      const url = `/v1/nodes/${id}/states/power`;
      expect((await h.req({ method: 'PUT', url, payload: { target: 'power on' }, headers: key('k'), token: 'tok-a' })).statusCode).toBe(202);
      const r = await h.req({ method: 'PUT', url, payload: { target: 'power off' }, headers: key('k'), token: 'tok-a' });
      const b = expectProblem(r, 422, 'idempotency_key_reused');
      expect(b['detail']).toContain('k');
      expect(r.headers['idempotent-replayed']).toBeUndefined();
      expect(await tasksOf(id)).toHaveLength(1);
    });

    it('answers 422 for the same body on a different path or method', async () => {
      const a = await h.enroll({}, 'tok-a');
      const b = await h.enroll({}, 'tok-a');
      const payload = { target: 'manage' };
      expect((await h.req({ method: 'PUT', url: `/v1/nodes/${a}/states/provision`, payload, headers: key('k2'), token: 'tok-a' })).statusCode).toBe(202);
      expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${b}/states/provision`, payload, headers: key('k2'), token: 'tok-a' }), 422, 'idempotency_key_reused');
      expectProblem(await h.req({ method: 'POST', url: `/v1/nodes/${a}/states/provision`, payload, headers: key('k2'), token: 'tok-a' }), 422, 'idempotency_key_reused');
      expect(await tasksOf(b)).toEqual([]);
    });

    it('answers 422 when a body is added to a request first sent without one', async () => {
      const id = await h.enroll({}, 'tok-a');
      expect((await h.req({ method: 'DELETE', url: `/v1/nodes/${id}`, headers: key('k3'), token: 'tok-a' })).statusCode).toBe(204);
      expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, headers: key('k3'), token: 'tok-a' }), 422, 'idempotency_key_reused');
    });
  });

  it('scopes keys per tenant: another tenant may use the same key independently', async () => {
    const payload = { driver: 'fake', resource_class: 'baremetal' };
    const a = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('shared'), token: 'tok-a' });
    const b = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('shared'), token: 'tok-b' });
    expect(a.statusCode).toBe(201);
    expect(b.statusCode).toBe(201);
    expect(b.headers['idempotent-replayed']).toBeUndefined();
    expect(b.json().id).not.toBe(a.json().id);
    expect(a.json().owner).toBe('acme');
    expect(b.json().owner).toBe('beta');
    // Each tenant's key replays its own answer; a different body under tenant b's key is still 422 there only.
    expect((await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('shared'), token: 'tok-a' })).json().id).toBe(a.json().id);
    expect((await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('shared'), token: 'tok-b' })).json().id).toBe(b.json().id);
    expect(await nodeCount('tok-a')).toBe(1);
    expect(await nodeCount('tok-b')).toBe(1);
  });

  it('treats the principal as part of the request: another token of the same tenant gets 422', async () => {
    const payload = { driver: 'fake', resource_class: 'baremetal' };
    expect((await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('mine'), token: 'tok-a' })).statusCode).toBe(201);
    expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('mine'), token: 'tok-a2' }), 422, 'idempotency_key_reused');
    expect(await nodeCount()).toBe(1);
  });

  it('answers 409 idempotency_key_in_use while the first request is still being processed', async () => {
    const id = await available({ driver_info: { fake_deploy_ms: 60_000 } });
    const send = () => h.req({
      method: 'PUT', url: `/v1/nodes/${id}/states/provision`, payload: { target: 'deploy' },
      headers: { ...key('deploy-1'), prefer: 'wait=30' }, token: 'tok-a',
    });
    // The first request holds its answer (Prefer: wait) until the deploy ends; the clock does not move.
    const firstP = send();
    await waitFor(async () => (await tasksOf(id)).some((t) => t.action === 'deploy' && t.state === 'running'));
    const busy = await send();
    const b = expectProblem(busy, 409, 'idempotency_key_in_use');
    expect(b['detail']).toContain('deploy-1');
    expect(Number(busy.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect((await tasksOf(id)).filter((t) => t.action === 'deploy')).toHaveLength(1);

    h.clock.advance(60_000);
    const first = await firstP;
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json().state).toBe('succeeded');
    expect(first.headers['preference-applied']).toBe('wait=30');
    // Once answered, the key replays that answer.
    const again = await send();
    expectReplay(first, again);
    expect(again.headers['preference-applied']).toBe('wait=30');
  });

  it('forgets a key after IRONCLAD_IDEMPOTENCY_RETENTION_S: it may then carry a new request', async () => {
    const payload = { driver: 'fake', resource_class: 'baremetal' };
    const first = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('old'), token: 'tok-a' });
    expect(first.statusCode).toBe(201);
    h.clock.advance(RETENTION_S * 1000 - 1_000);
    // Within the window: still the stored answer, and still 422 for another request.
    expect((await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('old'), token: 'tok-a' })).headers['idempotent-replayed']).toBe('true');
    expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload: { ...payload, name: 'other' }, headers: key('old'), token: 'tok-a' }), 422, 'idempotency_key_reused');
    h.clock.advance(2_000);
    const reused = await h.req({ method: 'POST', url: '/v1/nodes', payload: { ...payload, name: 'other' }, headers: key('old'), token: 'tok-a' });
    expect(reused.statusCode, reused.body).toBe(201);
    expect(reused.headers['idempotent-replayed']).toBeUndefined();
    expect(reused.json().name).toBe('other');
    // And the same request again after the window is a new request too.
    const fresh = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: key('old2'), token: 'tok-a' });
    expect(fresh.statusCode).toBe(201);
    expect(await nodeCount()).toBe(3);
  });

  it('rejects an empty key (400) without acting', async () => {
    const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, headers: key(''), token: 'tok-a' });
    expect(expectProblem(r, 400, 'validation_failed')['errors'][0].path).toBe('header.idempotency-key');
    expect(await nodeCount()).toBe(0);
  });

  it('rejects a key longer than 255 characters (400) without acting', async () => {
    const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, headers: key('k'.repeat(256)), token: 'tok-a' });
    const b = expectProblem(r, 400, 'validation_failed');
    expect(b['errors']).toEqual([{ path: 'header.idempotency-key', message: expect.stringMatching(/255/) }]);
    expect(await nodeCount()).toBe(0);
    expect((await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, headers: key('k'.repeat(255)), token: 'tok-a' })).statusCode).toBe(201);
  });

  it('ignores the key on GET', async () => {
    const r1 = await h.req({ method: 'GET', url: '/v1/nodes', headers: key('g'), token: 'tok-a' });
    const r2 = await h.req({ method: 'GET', url: '/v1/nodes', headers: key('g'), token: 'tok-a' });
    expect(r1.statusCode).toBe(200);
    expect(r2.statusCode).toBe(200);
    expect(r2.headers['idempotent-replayed']).toBeUndefined();
  });
});
