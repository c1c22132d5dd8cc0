/**
 * Authentication and roles (api.md "Auth", "Odd cases"): bearer tokens, 401 / 403 answers,
 * public operational endpoints, request ids and security headers on every answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';

const TOKENS = 'tA=acme:member,tB=globex:member,tR=acme:reader,tAdmin=ops:admin';


describe('authentication', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS });
  });
  afterAll(async () => h.close());

  it('answers 401 unauthorized with WWW-Authenticate: Bearer when no token is sent', async () => {
    for (const [method, url] of [['GET', '/v1/nodes'], ['GET', '/v1/tasks'], ['POST', '/v1/nodes'], ['GET', '/v1/nodes/anything']] as const) {
      const r = await h.req({ method, url, ...(method === 'POST' ? { payload: { driver: 'fake', resource_class: 'rc' } } : {}) });
      expectProblem(r, 401, 'unauthorized');
      expect(r.headers['www-authenticate']).toBe('Bearer');
    }
  });

  it('answers 401 to an unknown token and never echoes it', async () => {
    const r = await h.req({ method: 'GET', url: '/v1/nodes', token: 'not-a-token-XYZZY' });
    expectProblem(r, 401, 'unauthorized');
    expect(r.headers['www-authenticate']).toBe('Bearer');
    expect(r.body).not.toContain('XYZZY');
  });

  it('answers 401 to a malformed Authorization header', async () => {
    for (const authorization of ['Basic x', 'Basic dEE6', 'Bearer', 'Bearer ', 'tA', 'Bearer tA extra', 'Token tA']) {
      const r = await h.req({ method: 'GET', url: '/v1/nodes', headers: { authorization } });
      expectProblem(r, 401, 'unauthorized');
      expect(r.headers['www-authenticate']).toBe('Bearer');
    }
  });

  it('accepts a valid token, with the scheme name in any case', async () => {
    expect((await h.req({ method: 'GET', url: '/v1/nodes', token: 'tA' })).statusCode).toBe(200);
    expect((await h.req({ method: 'GET', url: '/v1/nodes', headers: { authorization: 'bearer tA' } })).statusCode).toBe(200);
  });

  it('does not accept a token that only differs in case or is a prefix of a real one', async () => {
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes', token: 'TA' }), 401, 'unauthorized');
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes', token: 't' }), 401, 'unauthorized');
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes', token: 'tAdmin2' }), 401, 'unauthorized');
  });

  it('serves /healthz, /readyz and /openapi.json without a token', async () => {
    const health = await h.req({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok' });
    const ready = await h.req({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().status).toBe('ready');
    const spec = await h.req({ method: 'GET', url: '/openapi.json' });
    expect(spec.statusCode).toBe(200);
    expect(spec.json().openapi).toMatch(/^3\./);
    expect(spec.json().components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
  });

  it('ignores a bad token on the public endpoints', async () => {
    expect((await h.req({ method: 'GET', url: '/healthz', token: 'nope' })).statusCode).toBe(200);
    expect((await h.req({ method: 'GET', url: '/healthz', headers: { authorization: 'Basic x' } })).statusCode).toBe(200);
  });
});

describe('roles', () => {
  let h: Harness;
  let nodeId: string;
  let taskId: string;
  beforeAll(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS });
    // A node of tenant acme with a running task (the fake clock does not move, so it stays running).
    nodeId = await h.enroll({ name: 'acme-1', driver_info: { fake_power_ms: 60_000 } }, 'tA');
    const r = await h.req({ method: 'PUT', url: `/v1/nodes/${nodeId}/states/power`, payload: { target: 'power on' }, token: 'tA' });
    expect(r.statusCode).toBe(202);
    taskId = r.json().id;
    await h.settle();
  });
  afterAll(async () => h.close());

  const commands = (): { what: string; method: 'POST' | 'PATCH' | 'DELETE' | 'PUT'; url: string; payload?: Record<string, unknown> }[] => [
    { what: 'enroll', method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc' } },
    { what: 'patch', method: 'PATCH', url: `/v1/nodes/${nodeId}`, payload: { traits: ['CUSTOM_X'] } },
    { what: 'delete', method: 'DELETE', url: `/v1/nodes/${nodeId}` },
    { what: 'provision', method: 'PUT', url: `/v1/nodes/${nodeId}/states/provision`, payload: { target: 'manage', on_busy: 'queue' } },
    { what: 'power', method: 'PUT', url: `/v1/nodes/${nodeId}/states/power`, payload: { target: 'power off', on_busy: 'queue' } },
    { what: 'maintenance on', method: 'PUT', url: `/v1/nodes/${nodeId}/maintenance`, payload: { reason: 'r' } },
    { what: 'maintenance off', method: 'DELETE', url: `/v1/nodes/${nodeId}/maintenance` },
    { what: 'heartbeat', method: 'POST', url: `/v1/heartbeat/${nodeId}`, payload: { status: 'resume' } },
    { what: 'cancel', method: 'POST', url: `/v1/tasks/${taskId}/cancel` },
  ];

  it('refuses every command of a reader with 403 forbidden and changes nothing', async () => {
    const before = await h.node(nodeId, 'tA');
    for (const c of commands()) {
      const r = await h.req({ method: c.method, url: c.url, ...(c.payload !== undefined ? { payload: c.payload } : {}), token: 'tR' });
      const body = expectProblem(r, 403, 'forbidden');
      expect(body.detail, c.what).toMatch(/read-only|reader/i);
    }
    await h.settle();
    const after = await h.node(nodeId, 'tA');
    expect(after.revision).toBe(before.revision);
    expect(after.traits).toEqual([]);
    expect(after.maintenance).toBe(false);
    expect(after.queued_tasks).toEqual([]);
    expect((await h.task(taskId, 'tA')).state).toBe('running');
    const list = await h.req({ method: 'GET', url: '/v1/nodes', token: 'tA' });
    expect(list.json().items.map((n: any) => n.id)).toEqual([nodeId]);
    const tasks = await h.req({ method: 'GET', url: '/v1/tasks', token: 'tA' });
    expect(tasks.json().items.map((t: any) => t.id)).toEqual([taskId]);
  });

  it('lets a reader read its tenant: nodes, node, history, history at a revision, tasks, task', async () => {
    const reads = [
      ['/v1/nodes', 200], [`/v1/nodes/${nodeId}`, 200], ['/v1/nodes/acme-1', 200], [`/v1/nodes/${nodeId}/history`, 200],
      [`/v1/nodes/${nodeId}/history/0`, 200], ['/v1/tasks', 200], [`/v1/tasks/${taskId}`, 202], ['/v1/machines/node', 200],
    ] as const;
    for (const [url, status] of reads) {
      const r = await h.req({ method: 'GET', url, token: 'tR' });
      expect(r.statusCode, `${url}: ${r.body}`).toBe(status);
    }
    const list = await h.req({ method: 'GET', url: '/v1/nodes', token: 'tR' });
    expect(list.json().items.map((n: any) => n.id)).toEqual([nodeId]);
    const tasks = await h.req({ method: 'GET', url: '/v1/tasks', token: 'tR' });
    expect(tasks.json().items.map((t: any) => t.id)).toEqual([taskId]);
  });

  it('lets a member act on its own tenant', async () => {
    const other = await h.enroll({ name: 'acme-2' }, 'tA');
    const r = await h.req({ method: 'PATCH', url: `/v1/nodes/${other}`, payload: { traits: ['CUSTOM_M'] }, token: 'tA' });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().traits).toEqual(['CUSTOM_M']);
  });

  it('refuses owner from a member (403 forbidden), even naming its own tenant, and creates nothing', async () => {
    for (const owner of ['globex', 'acme']) {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc', name: `m-${owner}`, owner }, token: 'tA' });
      expectProblem(r, 403, 'forbidden');
    }
    await h.settle();
    for (const token of ['tA', 'tAdmin']) {
      const names = (await h.req({ method: 'GET', url: '/v1/nodes', token })).json().items.map((n: any) => n.name);
      expect(names).not.toContain('m-globex');
      expect(names).not.toContain('m-acme');
    }
    // The refused name was not claimed: the member can still use it.
    const ok = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc', name: 'm-acme' }, token: 'tA' });
    expect(ok.statusCode, ok.body).toBe(201);
    expect(ok.json().owner).toBe('acme');
  });

  it('creates an admin\'s node in the admin\'s own tenant by default, and in another with owner', async () => {
    const own = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc', name: 'adm-own' }, token: 'tAdmin' });
    expect(own.statusCode, own.body).toBe(201);
    expect(own.json().owner).toBe('ops');
    const other = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc', name: 'adm-for-globex', owner: 'globex' }, token: 'tAdmin' });
    expect(other.statusCode, other.body).toBe(201);
    expect(other.json().owner).toBe('globex');
    await h.settle();
    // The tenant named by owner sees it and can act on it; the others cannot see it.
    expect((await h.req({ method: 'GET', url: `/v1/nodes/${other.json().id}`, token: 'tB' })).statusCode).toBe(200);
    const patched = await h.req({ method: 'PATCH', url: `/v1/nodes/${other.json().id}`, payload: { traits: ['CUSTOM_G'] }, token: 'tB' });
    expect(patched.statusCode, patched.body).toBe(200);
    expectProblem(await h.req({ method: 'GET', url: `/v1/nodes/${other.json().id}`, token: 'tA' }), 404, 'not_found');
    expectProblem(await h.req({ method: 'GET', url: `/v1/nodes/${own.json().id}`, token: 'tB' }), 404, 'not_found');
  });
});

describe('headers on every answer', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS });
  });
  afterAll(async () => h.close());

  const answers = (): Promise<LightMyRequestResponse>[] => [
    h.req({ method: 'GET', url: '/healthz' }), // 200, public
    h.req({ method: 'GET', url: '/v1/nodes', token: 'tA' }), // 200
    h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc' }, token: 'tA' }), // 201
    h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'nope' }, token: 'tA' }), // 400
    h.req({ method: 'GET', url: '/v1/nodes' }), // 401
    h.req({ method: 'GET', url: '/v1/nodes', headers: { authorization: 'Basic x' } }), // 401
    h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc' }, token: 'tR' }), // 403
    h.req({ method: 'GET', url: '/v1/nodes/00000000-0000-4000-8000-999999999999', token: 'tA' }), // 404
    h.req({ method: 'GET', url: '/no/such/route', token: 'tA' }), // 404 (route)
    h.req({ method: 'PUT', url: '/v1/nodes', token: 'tA' }), // 405
  ];

  it('carries a unique X-Request-Id on every answer', async () => {
    const rs = await Promise.all(answers());
    expect(rs.map((r) => r.statusCode)).toEqual([200, 200, 201, 400, 401, 401, 403, 404, 404, 405]);
    const ids = rs.map((r) => r.headers['x-request-id']);
    for (const id of ids) expect(id).toEqual(expect.stringMatching(/\S/));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('echoes a client-sent X-Request-Id, on success and on errors', async () => {
    const ok = await h.req({ method: 'GET', url: '/v1/nodes', token: 'tA', headers: { 'x-request-id': 'client-req-42' } });
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['x-request-id']).toBe('client-req-42');
    const denied = await h.req({ method: 'GET', url: '/v1/nodes', headers: { 'x-request-id': 'client-req-43' } });
    expect(denied.statusCode).toBe(401);
    expect(denied.headers['x-request-id']).toBe('client-req-43');
  });

  it('records the request id of a command in its events', async () => {
    const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc' }, token: 'tA', headers: { 'x-request-id': 'client-req-enroll' } });
    expect(r.statusCode).toBe(201);
    await h.settle();
    const hist = await h.req({ method: 'GET', url: `/v1/nodes/${r.json().id}/history`, token: 'tA' });
    expect(hist.json().items[0].metadata).toMatchObject({ request_id: 'client-req-enroll', principal: 'acme:member#1' });
  });

  it('sets the security headers of @fastify/helmet on every answer, errors and 401s included', async () => {
    const rs = await Promise.all(answers());
    for (const r of rs) {
      const where = `${r.statusCode} ${r.body.slice(0, 80)}`;
      expect(r.headers['x-content-type-options'], where).toBe('nosniff');
      expect(r.headers['x-frame-options'], where).toBe('SAMEORIGIN');
      expect(r.headers['strict-transport-security'], where).toMatch(/^max-age=\d+/);
      expect(r.headers['referrer-policy'], where).toBe('no-referrer');
      expect(r.headers['cross-origin-opener-policy'], where).toBe('same-origin');
      expect(r.headers['cross-origin-resource-policy'], where).toBe('same-origin');
      expect(r.headers['x-dns-prefetch-control'], where).toBe('off');
      expect(r.headers['x-permitted-cross-domain-policies'], where).toBe('none');
      expect(r.headers['cache-control'], where).toBe('no-store');
    }
  });
});

describe('open mode (no tokens, loopback)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(async () => h.close());

  it('treats every request as the admin of tenant "default" and logs a warning', async () => {
    const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'rc' } });
    expect(r.statusCode, r.body).toBe(201);
    expect(r.json().owner).toBe('default');
    const warn = h.logs.map((l) => JSON.parse(l)).find((l) => l.level === 40 && /OPEN/.test(l.msg));
    expect(warn).toBeDefined();
  });
});
