/**
 * Tenancy (api.md "Auth"): another tenant's resources are invisible — 404 `not_found`, never
 * 403 — through every endpoint, in every list and filter; admins see all tenants; names are
 * unique per tenant; every stored event names the principal that caused it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LightMyRequestResponse } from 'fastify';
import { createHarness, type Harness } from '../support/harness.js';

const TOKENS = 'tA=acme:member,tB=globex:member,tR=acme:reader,tAdmin=ops:admin';
const PRINCIPAL = { tA: 'acme:member#1', tB: 'globex:member#2', tR: 'acme:reader#3', tAdmin: 'ops:admin#4' } as const;
type Token = keyof typeof PRINCIPAL;

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** harness.driveUntil reads without a token; this one reads as `token` (tokens are configured here). */
async function driveUntil(h: Harness, id: string, state: string, token: Token): Promise<Record<string, any>> {
  for (let i = 0; i < 400; i++) {
    await h.settle();
    const n = (await h.req({ method: 'GET', url: `/v1/nodes/${id}`, token })).json();
    if (n.provision_state === state && n.current_task === null) return n;
    h.clock.advance(25);
    await tick();
  }
  throw new Error(`node ${id} did not reach "${state}"`);
}

async function driveTask(h: Harness, taskId: string, token: Token): Promise<Record<string, any>> {
  for (let i = 0; i < 400; i++) {
    await h.settle();
    const t = (await h.req({ method: 'GET', url: `/v1/tasks/${taskId}`, token })).json();
    if (['succeeded', 'failed', 'cancelled'].includes(t.state)) return t;
    h.clock.advance(25);
    await tick();
  }
  throw new Error(`task ${taskId} did not finish`);
}

describe('another tenant\'s node is invisible', () => {
  let h: Harness;
  /** acme's node, in manageable, with a power task still running (fake_power_ms is long). */
  let a: { id: string; name: string; taskId: string; doneTaskId: string; revision: number; events: number };
  let bNode: string;

  /** The A-only strings that must never appear in an answer to tenant B (beyond what B itself sent). */
  const SECRET_MARKERS = ['acme', 'alpha-only', 'gold-class-7', 'bmc-alpha.example'];
  /** Ids and a name that never existed anywhere: B's answers about A's node must look exactly like these. */
  const GHOST = { id: '00000000-0000-4000-8000-0000deadbeef', name: 'no-such-node', taskId: '00000000-0000-4000-8000-0000deadbee1', doneTaskId: '00000000-0000-4000-8000-0000deadbee2' };
  type Ref = typeof GHOST;

  /** Replaces the ids and name the caller itself sent by placeholders, so answers can be compared. */
  const normalise = (text: string, ref: Ref): string =>
    text.replaceAll(ref.id, '<ID>').replaceAll(ref.taskId, '<TASK>').replaceAll(ref.doneTaskId, '<DONE>').replaceAll(ref.name, '<NAME>');

  function expectHidden(r: LightMyRequestResponse, what: string, control?: LightMyRequestResponse): void {
    expect(r.statusCode, `${what}: ${r.body}`).toBe(404);
    expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = r.json();
    expect(body.code, what).toBe('not_found');
    expect(body.status).toBe(404);
    const text = normalise(r.body, a);
    for (const m of SECRET_MARKERS) expect(text, `${what} leaks ${m}`).not.toContain(m);
    for (const field of ['owner', 'provision_state', 'driver_info', 'current_state', 'blocking_task', 'allowed_actions']) {
      expect(body, `${what} leaks ${field}`).not.toHaveProperty(field);
    }
    // Indistinguishable from the answer about something that does not exist at all.
    if (control) expect(text, `${what}: differs from the answer for a node that does not exist`).toBe(normalise(control.body, GHOST));
  }

  beforeAll(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS });
    const id = await h.enroll({ name: 'alpha-only', resource_class: 'gold-class-7', driver_info: { bmc: 'bmc-alpha.example', fake_power_ms: 3_600_000 } }, 'tA');
    await h.provision(id, 'manage', {}, 'tA');
    await driveUntil(h, id, 'manageable', 'tA');
    const manageTask = (await h.req({ method: 'GET', url: `/v1/tasks?resource_id=${id}`, token: 'tA' })).json().items[0].id;
    const p = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target: 'power on' }, token: 'tA' });
    expect(p.statusCode, p.body).toBe(202);
    bNode = await h.enroll({ name: 'beta-only' }, 'tB');
    await h.settle();
    const n = await h.node(id, 'tA');
    const hist = (await h.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000`, token: 'tA' })).json();
    a = { id, name: 'alpha-only', taskId: p.json().id, doneTaskId: manageTask, revision: n.revision, events: hist.items.length };
  });
  afterAll(async () => h.close());

  it('answers 404 to every read of it, by id and by name, exactly as for a node that does not exist', async () => {
    const reads: [string, (t: Ref) => string][] = [
      ['GET node by id', (t) => `/v1/nodes/${t.id}`],
      ['GET node by name', (t) => `/v1/nodes/${t.name}`],
      ['history', (t) => `/v1/nodes/${t.id}/history`],
      ['history by name', (t) => `/v1/nodes/${t.name}/history`],
      ['history at revision', (t) => `/v1/nodes/${t.id}/history/0`],
      ['history at revision by name', (t) => `/v1/nodes/${t.name}/history/1`],
      ['running task', (t) => `/v1/tasks/${t.taskId}`],
      ['finished task', (t) => `/v1/tasks/${t.doneTaskId}`],
    ];
    for (const [what, url] of reads) {
      const control = await h.req({ method: 'GET', url: url(GHOST), token: 'tB' });
      expectHidden(await h.req({ method: 'GET', url: url(a), token: 'tB' }), what, control);
    }
  });

  it('answers 404 (never 403) to every command on it, and the node does not change', async () => {
    const cmds: { what: string; method: 'POST' | 'PATCH' | 'DELETE' | 'PUT'; url: (t: Ref) => string; payload?: Record<string, unknown> }[] = [
      { what: 'PATCH', method: 'PATCH', url: (t) => `/v1/nodes/${t.id}`, payload: { name: 'stolen', traits: ['CUSTOM_X'] } },
      { what: 'PATCH by name', method: 'PATCH', url: (t) => `/v1/nodes/${t.name}`, payload: { traits: ['CUSTOM_X'] } },
      { what: 'DELETE', method: 'DELETE', url: (t) => `/v1/nodes/${t.id}` },
      { what: 'DELETE by name', method: 'DELETE', url: (t) => `/v1/nodes/${t.name}` },
      { what: 'provision', method: 'PUT', url: (t) => `/v1/nodes/${t.id}/states/provision`, payload: { target: 'provide', on_busy: 'queue' } },
      { what: 'power', method: 'PUT', url: (t) => `/v1/nodes/${t.id}/states/power`, payload: { target: 'power off', on_busy: 'queue' } },
      { what: 'same power (would coalesce)', method: 'PUT', url: (t) => `/v1/nodes/${t.id}/states/power`, payload: { target: 'power on' } },
      { what: 'maintenance on', method: 'PUT', url: (t) => `/v1/nodes/${t.id}/maintenance`, payload: { reason: 'mine now' } },
      { what: 'maintenance off', method: 'DELETE', url: (t) => `/v1/nodes/${t.id}/maintenance` },
      { what: 'heartbeat', method: 'POST', url: (t) => `/v1/heartbeat/${t.id}`, payload: { status: 'done' } },
      { what: 'cancel running task', method: 'POST', url: (t) => `/v1/tasks/${t.taskId}/cancel` },
      { what: 'cancel finished task', method: 'POST', url: (t) => `/v1/tasks/${t.doneTaskId}/cancel` },
    ];
    for (const c of cmds) {
      const send = (t: Ref): Promise<LightMyRequestResponse> =>
        h.req({ method: c.method, url: c.url(t), ...(c.payload !== undefined ? { payload: c.payload } : {}), token: 'tB' });
      const control = await send(GHOST);
      expectHidden(await send(a), c.what, control);
      // With an Idempotency-Key too (the key hook runs before the route).
      const keyed = await h.req({ method: c.method, url: c.url(a), ...(c.payload !== undefined ? { payload: c.payload } : {}), token: 'tB', headers: { 'idempotency-key': `k-${c.what}` } });
      expectHidden(keyed, `${c.what} (with Idempotency-Key)`);
    }
    await h.settle();
    const n = await h.node(a.id, 'tA');
    expect(n).toMatchObject({ name: a.name, revision: a.revision, maintenance: false, traits: [], provision_state: 'manageable', queued_tasks: [] });
    expect(n.current_task.id).toBe(a.taskId);
    const hist = (await h.req({ method: 'GET', url: `/v1/nodes/${a.id}/history?limit=1000`, token: 'tA' })).json();
    expect(hist.items).toHaveLength(a.events);
    expect((await h.req({ method: 'GET', url: `/v1/tasks/${a.taskId}`, token: 'tA' })).json().state).toBe('running');
  });

  it('answers the owner differently: the same calls that are hidden from B work (or fail on state) for A', async () => {
    // Proves the 404s above are about tenancy, not about a bad request.
    const hb = await h.req({ method: 'POST', url: `/v1/heartbeat/${a.id}`, payload: { status: 'done' }, token: 'tA' });
    expect(hb.statusCode).toBe(409);
    expect(hb.json().code).toBe('invalid_state');
    expect((await h.req({ method: 'GET', url: `/v1/nodes/${a.name}/history/1`, token: 'tA' })).statusCode).toBe(200);
    const cancelDone = await h.req({ method: 'POST', url: `/v1/tasks/${a.doneTaskId}/cancel`, token: 'tA' });
    expect(cancelDone.statusCode).toBe(409);
    expect(cancelDone.json().code).toBe('not_cancellable');
  });

  it('lists none of it in GET /v1/nodes, with or without filters', async () => {
    const lists = [
      '/v1/nodes', '/v1/nodes?owner=acme', '/v1/nodes?owner=globex', `/v1/nodes?name=${a.name}`, '/v1/nodes?provision_state=manageable',
      '/v1/nodes?resource_class=gold-class-7', '/v1/nodes?has_pending=true', '/v1/nodes?maintenance=false', '/v1/nodes?limit=1000',
    ];
    for (const url of lists) {
      const r = await h.req({ method: 'GET', url, token: 'tB' });
      expect(r.statusCode, `${url}: ${r.body}`).toBe(200);
      const ids = r.json().items.map((n: any) => n.id);
      expect(ids, url).not.toContain(a.id);
      for (const m of SECRET_MARKERS) expect(r.body, `${url} leaks ${m}`).not.toContain(m);
      for (const n of r.json().items) expect(n.owner).toBe('globex');
    }
    expect((await h.req({ method: 'GET', url: '/v1/nodes', token: 'tB' })).json().items.map((n: any) => n.id)).toEqual([bNode]);
    expect((await h.req({ method: 'GET', url: '/v1/nodes?owner=acme', token: 'tB' })).json().items).toEqual([]);
  });

  it('lists none of its tasks in GET /v1/tasks, with or without filters', async () => {
    const lists = [
      '/v1/tasks', `/v1/tasks?resource_id=${a.id}`, '/v1/tasks?resource_type=node', '/v1/tasks?state=running', '/v1/tasks?state=succeeded',
      '/v1/tasks?action=power%20on', '/v1/tasks?action=manage', '/v1/tasks?since=2000-01-01T00:00:00Z', '/v1/tasks?limit=1000',
    ];
    for (const url of lists) {
      const r = await h.req({ method: 'GET', url, token: 'tB' });
      expect(r.statusCode, `${url}: ${r.body}`).toBe(200);
      expect(r.json().items, url).toEqual([]);
      expect(r.body).not.toContain(a.id);
    }
  });

  it('is visible to its own tenant\'s tokens and to an admin, alongside the other tenant\'s', async () => {
    const mine = (await h.req({ method: 'GET', url: '/v1/nodes', token: 'tA' })).json().items.map((n: any) => n.id);
    expect(mine).toEqual([a.id]);
    const reader = (await h.req({ method: 'GET', url: '/v1/nodes', token: 'tR' })).json().items.map((n: any) => n.id);
    expect(reader).toEqual([a.id]);
    const all = (await h.req({ method: 'GET', url: '/v1/nodes', token: 'tAdmin' })).json().items.map((n: any) => n.id);
    expect(all.sort()).toEqual([a.id, bNode].sort());
    const onlyAcme = (await h.req({ method: 'GET', url: '/v1/nodes?owner=acme', token: 'tAdmin' })).json().items.map((n: any) => n.id);
    expect(onlyAcme).toEqual([a.id]);
    const onlyGlobex = (await h.req({ method: 'GET', url: '/v1/nodes?owner=globex', token: 'tAdmin' })).json().items.map((n: any) => n.id);
    expect(onlyGlobex).toEqual([bNode]);
    expect((await h.req({ method: 'GET', url: `/v1/nodes/${a.id}`, token: 'tAdmin' })).statusCode).toBe(200);
    expect((await h.req({ method: 'GET', url: `/v1/nodes/${bNode}`, token: 'tAdmin' })).statusCode).toBe(200);
    expect((await h.req({ method: 'GET', url: `/v1/tasks/${a.taskId}`, token: 'tAdmin' })).statusCode).toBe(202);
    const tasks = (await h.req({ method: 'GET', url: '/v1/tasks', token: 'tAdmin' })).json().items.map((t: any) => t.id);
    expect(tasks).toEqual(expect.arrayContaining([a.taskId, a.doneTaskId]));
    const aTasks = (await h.req({ method: 'GET', url: '/v1/tasks', token: 'tA' })).json().items.map((t: any) => t.id);
    expect(aTasks).toEqual([a.taskId, a.doneTaskId]);
  });

  it('keeps a deleted node\'s history hidden from the other tenant', async () => {
    const id = await h.enroll({ name: 'alpha-gone' }, 'tA');
    const del = await h.req({ method: 'DELETE', url: `/v1/nodes/${id}`, token: 'tA' });
    expect(del.statusCode, del.body).toBe(204);
    await h.settle();
    expect((await h.req({ method: 'GET', url: `/v1/nodes/${id}/history`, token: 'tA' })).statusCode).toBe(200);
    expectHidden(await h.req({ method: 'GET', url: `/v1/nodes/${id}/history`, token: 'tB' }), 'deleted node history');
    expectHidden(await h.req({ method: 'GET', url: `/v1/nodes/${id}/history/0`, token: 'tB' }), 'deleted node history at 0');
  });

  it('does not replay another tenant\'s answer for the same Idempotency-Key', async () => {
    const body = { driver: 'fake', resource_class: 'rc' };
    const ra = await h.req({ method: 'POST', url: '/v1/nodes', payload: body, token: 'tA', headers: { 'idempotency-key': 'shared-key-1' } });
    expect(ra.statusCode, ra.body).toBe(201);
    const rb = await h.req({ method: 'POST', url: '/v1/nodes', payload: body, token: 'tB', headers: { 'idempotency-key': 'shared-key-1' } });
    expect(rb.statusCode, rb.body).toBe(201);
    expect(rb.headers['idempotent-replayed']).toBeUndefined();
    expect(rb.json().owner).toBe('globex');
    expect(rb.json().id).not.toBe(ra.json().id);
    expect(rb.body).not.toContain('acme');
  });
});

describe('names are unique per tenant', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS });
  });
  afterAll(async () => h.close());

  it('lets two tenants use the same name, and each resolves its own', async () => {
    const a = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'web-1', driver: 'fake', resource_class: 'rc-a' }, token: 'tA' });
    const b = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'web-1', driver: 'fake', resource_class: 'rc-b' }, token: 'tB' });
    expect(a.statusCode, a.body).toBe(201);
    expect(b.statusCode, b.body).toBe(201);
    expect(a.json().id).not.toBe(b.json().id);
    await h.settle();
    const ra = await h.req({ method: 'GET', url: '/v1/nodes/web-1', token: 'tA' });
    expect(ra.json()).toMatchObject({ id: a.json().id, owner: 'acme', resource_class: 'rc-a' });
    const rr = await h.req({ method: 'GET', url: '/v1/nodes/web-1', token: 'tR' });
    expect(rr.json()).toMatchObject({ id: a.json().id, owner: 'acme' });
    const rb = await h.req({ method: 'GET', url: '/v1/nodes/web-1', token: 'tB' });
    expect(rb.json()).toMatchObject({ id: b.json().id, owner: 'globex', resource_class: 'rc-b' });
    expect(rb.body).not.toContain('rc-a');
    // Commands by name act on the caller's own node.
    const pb = await h.req({ method: 'PATCH', url: '/v1/nodes/web-1', payload: { traits: ['CUSTOM_B'] }, token: 'tB' });
    expect(pb.json()).toMatchObject({ id: b.json().id, traits: ['CUSTOM_B'] });
    await h.settle();
    expect((await h.node(a.json().id, 'tA')).traits).toEqual([]);
    // Filters by name stay in the tenant.
    const la = (await h.req({ method: 'GET', url: '/v1/nodes?name=web-1', token: 'tA' })).json().items.map((n: any) => n.id);
    expect(la).toEqual([a.json().id]);
    const lAdmin = (await h.req({ method: 'GET', url: '/v1/nodes?name=web-1', token: 'tAdmin' })).json().items.map((n: any) => n.id);
    expect(lAdmin.sort()).toEqual([a.json().id, b.json().id].sort());
  });

  it('still refuses a second node of the same name in one tenant (409 name_conflict)', async () => {
    const dup = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'web-1', driver: 'fake', resource_class: 'rc' }, token: 'tA' });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().code).toBe('name_conflict');
    // The conflict is about the caller's tenant only: it says nothing about other tenants.
    expect(dup.body).not.toContain('globex');
  });

  it('lets a node be renamed to a name another tenant uses, but not to one its own tenant uses', async () => {
    const b2 = await h.enroll({ name: 'beta-2' }, 'tB');
    const a2 = await h.enroll({ name: 'alpha-2' }, 'tA');
    const ok = await h.req({ method: 'PATCH', url: `/v1/nodes/${b2}`, payload: { name: 'alpha-2' }, token: 'tB' });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json().name).toBe('alpha-2');
    const clash = await h.req({ method: 'PATCH', url: `/v1/nodes/${a2}`, payload: { name: 'web-1' }, token: 'tA' });
    expect(clash.statusCode).toBe(409);
    expect(clash.json().code).toBe('name_conflict');
    await h.settle();
    expect((await h.req({ method: 'GET', url: '/v1/nodes/alpha-2', token: 'tA' })).json().id).toBe(a2);
    expect((await h.req({ method: 'GET', url: '/v1/nodes/alpha-2', token: 'tB' })).json().id).toBe(b2);
  });

  it('lets an admin create a same-named node in another tenant with owner, and the tenant resolve it', async () => {
    const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'web-2', driver: 'fake', resource_class: 'rc', owner: 'globex' }, token: 'tAdmin' });
    expect(r.statusCode, r.body).toBe(201);
    const mine = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'web-2', driver: 'fake', resource_class: 'rc' }, token: 'tA' });
    expect(mine.statusCode, mine.body).toBe(201);
    const again = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'web-2', driver: 'fake', resource_class: 'rc' }, token: 'tB' });
    expect(again.statusCode).toBe(409);
    await h.settle();
    expect((await h.req({ method: 'GET', url: '/v1/nodes/web-2', token: 'tB' })).json().id).toBe(r.json().id);
    expect((await h.req({ method: 'GET', url: '/v1/nodes/web-2', token: 'tA' })).json().id).toBe(mine.json().id);
  });
});

describe('audit trail', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS });
  });
  afterAll(async () => h.close());

  it('names, in every stored event, the principal that caused it — and "system" for driver outcomes', async () => {
    /** request id → principal, for every command sent. */
    const sent = new Map<string, string>();
    const send = async (token: Token, method: 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, payload?: Record<string, unknown>): Promise<LightMyRequestResponse> => {
      const r = await h.req({ method, url, ...(payload !== undefined ? { payload } : {}), token });
      expect(r.statusCode, `${method} ${url}: ${r.body}`).toBeLessThan(300);
      sent.set(String(r.headers['x-request-id']), PRINCIPAL[token]);
      return r;
    };
    const enrolled = await send('tA', 'POST', '/v1/nodes', { name: 'audited', driver: 'fake', resource_class: 'rc' });
    const id = enrolled.json().id as string;
    await send('tA', 'PUT', `/v1/nodes/${id}/states/provision`, { target: 'manage' });
    await driveUntil(h, id, 'manageable', 'tA');
    await send('tAdmin', 'PATCH', `/v1/nodes/${id}`, { traits: ['CUSTOM_AUDIT'] });
    const power = await send('tAdmin', 'PUT', `/v1/nodes/${id}/states/power`, { target: 'power on' });
    await driveTask(h, power.json().id, 'tA');
    await send('tA', 'PUT', `/v1/nodes/${id}/maintenance`, { reason: 'check' });
    await send('tA', 'DELETE', `/v1/nodes/${id}/maintenance`);
    await send('tA', 'PUT', `/v1/nodes/${id}/states/provision`, { target: 'provide' });
    await driveUntil(h, id, 'available', 'tA');
    await h.settle();

    const events = (await h.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000`, token: 'tA' })).json().items as any[];
    expect(events.length).toBeGreaterThan(10);
    for (const e of events) {
      const m = e.metadata;
      expect(m.principal, `${e.type} #${e.revision}`).toEqual(expect.any(String));
      expect(m.principal).not.toMatch(/^t(A|B|R|Admin)$/); // a label, never the token
      if (m.request_id !== null) {
        expect(sent.has(m.request_id), `${e.type} #${e.revision} has an unknown request id ${m.request_id}`).toBe(true);
        expect(m.principal, `${e.type} #${e.revision}`).toBe(sent.get(m.request_id));
      } else {
        expect(m.principal, `${e.type} #${e.revision} has no request id, so it is internal`).toBe('system');
      }
    }
    const by = (type: string): string[] => events.filter((e) => e.type === type).map((e) => e.metadata.principal);
    expect(by('NodeEnrolled')).toEqual(['acme:member#1']);
    expect(by('TaskCreated')).toEqual(['acme:member#1', 'ops:admin#4', 'acme:member#1']);
    expect(new Set(by('TaskFinished'))).toEqual(new Set(['system']));
    expect(by('OperationSucceeded').length).toBeGreaterThan(0);
    expect(new Set(by('OperationSucceeded'))).toEqual(new Set(['system']));
    expect(by('PowerActionSucceeded')).toEqual(['system']);
    // Every principal that acted appears, and the tasks say who asked.
    const principals = new Set(events.map((e) => e.metadata.principal));
    expect(principals).toEqual(new Set(['acme:member#1', 'ops:admin#4', 'system']));
    const tasks = (await h.req({ method: 'GET', url: `/v1/tasks?resource_id=${id}`, token: 'tA' })).json().items;
    expect(tasks.map((t: any) => [t.action, t.requested_by])).toEqual([
      ['provide', 'acme:member#1'], ['power on', 'ops:admin#4'], ['manage', 'acme:member#1'],
    ]);
    // The same audit trail is in the raw store (what SSE/NATS consumers and replays see).
    const raw = await h.store.readStream(`node-${id}`);
    expect(raw.map((e) => e.metadata['principal'])).toEqual(events.map((e) => e.metadata.principal));
  });
});
