/**
 * api.md "Read-your-writes": every write answer carries `Ironclad-Position`; a GET sending it back
 * (header or `?min_position=`) is answered only once the read models reached it (up to 5 s), else
 * 503 `not_caught_up` with Retry-After. To see the wait happen, the event store's live delivery to
 * the projector is held back by the test (a gate), so a plain GET is provably stale meanwhile.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createMemoryEventStore } from '../../src/adapters/memory/event-store.js';
import type { EventStore } from '../../src/ports/event-store.js';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';


/** The memory event store, whose deliveries to subscribers wait while the gate is held. */
function gatedStore(): { store: EventStore; hold(): void; release(): void } {
  const inner = createMemoryEventStore();
  let gate: { opened: Promise<void>; open: () => void } | null = null;
  const store: EventStore = {
    ...inner,
    subscribeAll(after, handler) {
      return inner.subscribeAll(after, async (events) => {
        while (gate) await gate.opened;
        return handler(events);
      });
    },
  };
  return {
    store,
    hold() {
      let open = (): void => {};
      const opened = new Promise<void>((r) => (open = r));
      gate = { opened, open };
    },
    release() {
      const g = gate;
      gate = null;
      g?.open();
    },
  };
}

/** A few turns of the event loop (not a timed sleep): enough for an unblocked request to finish. */
async function turns(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

describe('read-your-writes', () => {
  let h: Harness;
  let gate: ReturnType<typeof gatedStore>;
  let last = -1n;
  beforeEach(async () => {
    gate = gatedStore();
    h = await createHarness({}, { store: gate.store });
    last = -1n;
  });
  afterEach(async () => {
    gate.release();
    await h.close();
  });

  /**
   * Holds the projection, performs `write`, checks its position (present, later than the previous
   * write's), shows a plain `GET url` is stale, then that the same GET with the position waits for
   * the projection and sees the write. `how` picks the header or `?min_position=`.
   */
  async function readYourWrite(
    write: () => Promise<LightMyRequestResponse>,
    expectedStatus: number,
    url: string,
    sees: (r: LightMyRequestResponse) => boolean,
    how: 'header' | 'query' = 'header',
  ): Promise<LightMyRequestResponse> {
    await h.settle();
    gate.hold();
    const w = await write();
    expect(w.statusCode, w.body).toBe(expectedStatus);
    const pos = w.headers['ironclad-position'];
    expect(pos, `${w.statusCode} answer without Ironclad-Position`).toMatch(/^\d+$/);
    expect(BigInt(pos as string)).toBeGreaterThan(last);
    last = BigInt(pos as string);
    expect(sees(await h.req({ method: 'GET', url })), `GET ${url} should still be stale`).toBe(false);

    const withPos = how === 'header'
      ? h.req({ method: 'GET', url, headers: { 'ironclad-position': String(pos) } })
      : h.req({ method: 'GET', url: `${url}${url.includes('?') ? '&' : '?'}min_position=${pos}` });
    let answered = false;
    void withPos.then(() => (answered = true));
    await turns();
    expect(answered, 'the GET with the position waits for the read models').toBe(false);
    gate.release();
    const r = await withPos;
    expect(sees(r), `GET ${url} with position ${pos}: ${r.statusCode} ${r.body}`).toBe(true);
    return w;
  }

  const items = (r: LightMyRequestResponse): any[] => (r.statusCode === 200 ? r.json().items : []);

  it('every write answer carries Ironclad-Position, and a GET with it sees that write', async () => {
    let id = '';
    await readYourWrite(async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'n1', driver: 'fake', resource_class: 'rc', driver_info: { fake_verify_ms: 60_000 } } });
      id = r.json().id;
      return r;
    }, 201, '/v1/nodes?name=n1', (r) => items(r).length === 1);
    // Names resolve through the read model: the node by name, and its history by name.
    await readYourWrite(() => h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { name: 'n2' } }), 200, '/v1/nodes/n2/history/1', (r) => r.statusCode === 200 && r.json().state.name === 'n2', 'query');
    await readYourWrite(() => h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { traits: ['gpu'] } }), 200, '/v1/nodes/n2', (r) => r.statusCode === 200 && r.json().traits.includes('gpu'));
    await readYourWrite(() => h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: { reason: 'r' } }), 200, '/v1/nodes?maintenance=true', (r) => items(r).length === 1);
    await readYourWrite(() => h.req({ method: 'DELETE', url: `/v1/nodes/${id}/maintenance` }), 200, '/v1/nodes?maintenance=false', (r) => items(r).length === 1);

    let manage = '';
    await readYourWrite(async () => {
      const r = await h.provision(id, 'manage');
      manage = r.json().id;
      return r;
    }, 202, `/v1/tasks?resource_id=${id}`, (r) => items(r).some((t) => t.id === manage), 'query');
    expect((await h.task(manage)).state).toBe('running');
    // A coalesced repeat changes the task (coalesced_count), so it has a position too.
    await readYourWrite(async () => {
      const r = await h.provision(id, 'manage');
      expect(r.json()).toMatchObject({ id: manage, coalesced: true });
      return r;
    }, 202, `/v1/tasks?resource_id=${id}`, (r) => items(r).some((t) => t.id === manage && t.coalesced_count === 1));

    let power = '';
    await readYourWrite(async () => {
      const r = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target: 'power on', on_busy: 'queue' } });
      power = r.json().id;
      return r;
    }, 202, '/v1/tasks?state=queued', (r) => items(r).some((t) => t.id === power));
    await readYourWrite(() => h.req({ method: 'POST', url: `/v1/tasks/${power}/cancel` }), 200, `/v1/tasks?state=cancelled`, (r) => items(r).some((t) => t.id === power));
    // A refused command changed nothing, so it carries no position.
    const refused = await h.provision(id, 'abort');
    expectProblem(refused, 409, 'invalid_state');
    expect(refused.headers['ironclad-position']).toBeUndefined();
    await readYourWrite(() => h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: {} }), 200, '/v1/nodes?maintenance=true', (r) => items(r).length === 1);
    await readYourWrite(() => h.req({ method: 'DELETE', url: `/v1/nodes/${id}` }), 204, '/v1/nodes', (r) => items(r).length === 0);
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes/n2', headers: { 'ironclad-position': String(last) } }), 404, 'not_found');
  });

  it('a heartbeat answer carries the position of what it changed', async () => {
    const id = await h.enroll({ name: 'hb', driver_info: { fake_deploy: 'wait' } });
    await h.provision(id, 'manage');
    await h.driveUntil(id, 'manageable');
    await h.provision(id, 'provide');
    await h.driveUntil(id, 'available');
    await h.provision(id, 'deploy');
    for (let i = 0; i < 100 && (await h.node(id)).provision_state !== 'wait call-back'; i++) h.clock.advance(25);
    expect((await h.node(id)).provision_state).toBe('wait call-back');
    await readYourWrite(() => h.req({ method: 'POST', url: `/v1/heartbeat/${id}`, payload: { status: 'done' } }), 202, `/v1/nodes?provision_state=${encodeURIComponent('wait call-back')}`, (r) => r.statusCode === 200 && items(r).length === 0);
  });

  it('answers 503 not_caught_up with Retry-After for a position the log has not reached (after waiting 5 s)', async () => {
    const id = await h.enroll({ name: 'x' });
    await h.settle();
    const r = await h.req({ method: 'GET', url: `/v1/nodes/${id}`, headers: { 'ironclad-position': '999999999999' } });
    const b = expectProblem(r, 503, 'not_caught_up');
    expect(b['detail']).toContain('999999999999');
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  });

  it('rejects a malformed position with 400, in the header or in ?min_position=', async () => {
    const id = await h.enroll({ name: 'x' });
    for (const bad of ['abc', '-1', '1.5', '12abc', ' ']) {
      let b = expectProblem(await h.req({ method: 'GET', url: `/v1/nodes/${id}`, headers: { 'ironclad-position': bad } }), 400, 'validation_failed');
      expect(b['errors'].map((e: any) => e.path), bad).toEqual(['header.ironclad-position']);
      b = expectProblem(await h.req({ method: 'GET', url: `/v1/tasks?min_position=${encodeURIComponent(bad)}` }), 400, 'validation_failed');
      expect(b['errors'].map((e: any) => e.path), bad).toEqual(['querystring.min_position']);
    }
    // A position that is already reached answers at once, on every read.
    await h.settle();
    const pos = String(await h.store.headPosition());
    for (const url of ['/v1/nodes', `/v1/nodes/${id}`, `/v1/nodes/${id}/history`, `/v1/nodes/${id}/history/0`, '/v1/tasks']) {
      expect((await h.req({ method: 'GET', url, headers: { 'ironclad-position': pos } })).statusCode, url).toBe(200);
      expect((await h.req({ method: 'GET', url: `${url}?min_position=${pos}` })).statusCode, url).toBe(200);
    }
  });
});
