/**
 * Backpressure (api.md "Conventions"): 429 `rate_limited` per token above IRONCLAD_RATE_LIMIT,
 * and 503 `overloaded` when the global backlog of pending tasks reaches IRONCLAD_MAX_PENDING, with
 * a Retry-After computed from the observed drain rate. The fake clock decides when tasks finish.
 * And load shedding: 503 `overloaded` + Retry-After while the process is saturated.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';


let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

describe('429 rate_limited per token', () => {
  const TOKENS = 'tok-a=acme:member,tok-a2=acme:member,tok-b=beta:member';

  it('refuses the 6th request of a token within a minute with a problem and Retry-After', async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS, IRONCLAD_RATE_LIMIT: '5' });
    const hh = h;
    // Reads and writes count alike.
    const answers = [
      await hh.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' }),
      await hh.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, token: 'tok-a' }),
      await hh.req({ method: 'GET', url: '/v1/tasks', token: 'tok-a' }),
      await hh.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' }),
      await hh.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' }),
    ];
    expect(answers.map((r) => r.statusCode)).toEqual([200, 201, 200, 200, 200]);
    const r = await hh.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' });
    const b = expectProblem(r, 429, 'rate_limited');
    const retry = Number(r.headers['retry-after']);
    expect(Number.isInteger(retry)).toBe(true);
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    expect(b['detail']).toMatch(/5 requests per minute/);
    // Commands too, and refused ones do nothing.
    expectProblem(await hh.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, token: 'tok-a' }), 429, 'rate_limited');
    const nodes = await hh.req({ method: 'GET', url: '/v1/nodes', token: 'tok-b' });
    expect(nodes.statusCode).toBe(200);
  });

  it('counts each token on its own: another token (even of the same tenant) is not affected', async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS, IRONCLAD_RATE_LIMIT: '5' });
    for (let i = 0; i < 5; i++) expect((await h.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' })).statusCode).toBe(200);
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' }), 429, 'rate_limited');
    for (const token of ['tok-b', 'tok-a2']) {
      for (let i = 0; i < 5; i++) expect((await h.req({ method: 'GET', url: '/v1/nodes', token })).statusCode, token).toBe(200);
      expectProblem(await h.req({ method: 'GET', url: '/v1/nodes', token }), 429, 'rate_limited');
    }
  });

  it('never limits /healthz (nor the other operational endpoints)', async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS, IRONCLAD_RATE_LIMIT: '5' });
    for (let i = 0; i < 5; i++) expect((await h.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' })).statusCode).toBe(200);
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' }), 429, 'rate_limited');
    for (let i = 0; i < 20; i++) {
      const r = await h.req({ method: 'GET', url: '/healthz', token: 'tok-a' });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ status: 'ok' });
      expect((await h.req({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      expect((await h.req({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
    }
  });

  it('counts requests that fail parsing or validation: a flood of bad requests is limited too', async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS, IRONCLAD_RATE_LIMIT: '5' });
    for (let i = 0; i < 3; i++) {
      expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'bogus' }, token: 'tok-a' }), 400, 'validation_failed');
    }
    for (let i = 0; i < 2; i++) {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: '{"driver":', headers: { 'content-type': 'application/json' }, token: 'tok-a' });
      expectProblem(r, 400, 'malformed_body');
    }
    expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'bogus' }, token: 'tok-a' }), 429, 'rate_limited');
    expectProblem(await h.req({ method: 'GET', url: '/v1/nodes?limit=0', token: 'tok-a' }), 429, 'rate_limited');
  });

  it('frees the Idempotency-Key of a refused request, so the retry is processed', async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS, IRONCLAD_RATE_LIMIT: '1' });
    const send = () => h!.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, headers: { 'idempotency-key': 'k' }, token: 'tok-a' });
    expect((await h.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' })).statusCode).toBe(200);
    expectProblem(await send(), 429, 'rate_limited');
    // Keys are per tenant: the tenant's other token may now send the refused request under that key.
    const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, headers: { 'idempotency-key': 'k' }, token: 'tok-a2' });
    expect(r.statusCode, r.body).toBe(201);
  });
});

describe('503 overloaded above IRONCLAD_MAX_PENDING', () => {
  /** `n` available nodes, driven one at a time (so the backlog never exceeds one task meanwhile). */
  async function availableNodes(n: number, driverInfo: Record<string, unknown>): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = await h!.enroll({ name: `n${i}`, driver_info: driverInfo });
      expect((await h!.provision(id, 'manage')).statusCode).toBe(202);
      await h!.driveUntil(id, 'manageable');
      expect((await h!.provision(id, 'provide')).statusCode).toBe(202);
      await h!.driveUntil(id, 'available');
      ids.push(id);
    }
    return ids;
  }

  const pending = (): number => (h!.ic.internals['tasksRM'] as { pendingCount(): number }).pendingCount();

  it('refuses the 4th pending task with Retry-After and pending_tasks, and accepts again once tasks drain', async () => {
    h = await createHarness({ IRONCLAD_MAX_PENDING: '3' });
    const ids = await availableNodes(5, { fake_deploy_ms: 60_000 });
    for (const id of ids.slice(0, 3)) {
      expect((await h.provision(id, 'deploy')).statusCode).toBe(202);
      await h.settle();
    }
    expect(pending()).toBe(3);

    const r = await h.provision(ids[3]!, 'deploy');
    const b = expectProblem(r, 503, 'overloaded');
    expect(r.headers['retry-after']).toMatch(/^\d+$/);
    expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(b['pending_tasks']).toBe(3);
    expect(b['retry_after_s']).toBe(Number(r.headers['retry-after']));
    // Power commands create tasks too; reads and non-task writes go on.
    expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${ids[4]}/states/power`, payload: { target: 'power on' } }), 503, 'overloaded');
    expect((await h.req({ method: 'GET', url: '/v1/nodes' })).statusCode).toBe(200);
    expect((await h.req({ method: 'PUT', url: `/v1/nodes/${ids[4]}/maintenance`, payload: { reason: 'x' } })).statusCode).toBe(200);
    expect((await h.req({ method: 'DELETE', url: `/v1/nodes/${ids[4]}/maintenance` })).statusCode).toBe(200);
    expect((await h.node(ids[3]!)).provision_state).toBe('available');

    h.clock.advance(60_000);
    await waitFor(() => pending() === 0, { what: 'the deploys finish' });
    const ok = await h.provision(ids[3]!, 'deploy');
    expect(ok.statusCode, ok.body).toBe(202);
  });

  it('holds the limit under a concurrent burst: 8 simultaneous commands, limit 3 → 3 accepted, 5 refused', async () => {
    h = await createHarness({ IRONCLAD_MAX_PENDING: '3' });
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push(await h.enroll({ name: `b${i}`, driver_info: { fake_power_ms: 10_000 } }));
    await h.settle();
    // Not awaited one by one: all 8 are in the server before any of their tasks is projected.
    const answers = await Promise.all(ids.map((id) => h!.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target: 'power on' } })));
    const codes = answers.map((r) => r.statusCode);
    expect(codes.filter((c) => c === 202)).toHaveLength(3);
    expect(codes.filter((c) => c === 503)).toHaveLength(5);
    for (const r of answers.filter((a) => a.statusCode === 503)) expectProblem(r, 503, 'overloaded');
    await h.settle();
    expect(pending()).toBe(3);
    const r = await h.req({ method: 'GET', url: '/v1/tasks?state=running' });
    expect(r.json().items).toHaveLength(3);
  });

  it('frees the slot of a command that created no task (refused, failed or coalesced)', async () => {
    h = await createHarness({ IRONCLAD_MAX_PENDING: '3' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await h.enroll({ name: `f${i}`, driver_info: { fake_power_ms: 10_000 } }));
    const power = (id: string, target = 'power on') => h!.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target } });
    for (let i = 0; i < 5; i++) {
      expectProblem(await power('00000000-0000-4000-8000-999999999999'), 404, 'not_found');
      expectProblem(await h.provision(ids[0]!, 'provide'), 409, 'invalid_state');
    }
    expect((await power(ids[0]!)).statusCode).toBe(202);
    expect((await power(ids[1]!)).statusCode).toBe(202);
    for (let i = 0; i < 5; i++) {
      const again = await power(ids[0]!);
      expect(again.statusCode, again.body).toBe(202);
      expect(again.json().coalesced).toBe(true);
    }
    await h.settle();
    expect(pending()).toBe(2);
    expect((await power(ids[2]!)).statusCode).toBe(202);
    await h.settle();
    expectProblem(await power(ids[2]!, 'power off'), 503, 'overloaded');
  });

  it('does not store an overloaded answer under an Idempotency-Key: the retry after the drain is processed', async () => {
    h = await createHarness({ IRONCLAD_MAX_PENDING: '1' });
    const a = await h.enroll({ name: 'a', driver_info: { fake_power_ms: 10_000 } });
    const b = await h.enroll({ name: 'b', driver_info: { fake_power_ms: 10_000 } });
    expect((await h.req({ method: 'PUT', url: `/v1/nodes/${a}/states/power`, payload: { target: 'power on' } })).statusCode).toBe(202);
    await h.settle();
    const send = () => h!.req({ method: 'PUT', url: `/v1/nodes/${b}/states/power`, payload: { target: 'power on' }, headers: { 'idempotency-key': 'retry-me' } });
    const refused = await send();
    expectProblem(refused, 503, 'overloaded');
    h.clock.advance(10_000);
    await waitFor(() => pending() === 0, { what: 'the first power action finishes' });
    const accepted = await send();
    expect(accepted.statusCode, accepted.body).toBe(202);
    expect(accepted.headers['idempotent-replayed']).toBeUndefined();
    const replayed = await send();
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(replayed.json().id).toBe(accepted.json().id);
  });

  it('derives Retry-After from the observed drain rate (fake clock: 3 tasks in 10 s → 0.3/s → 4 s)', async () => {
    h = await createHarness({ IRONCLAD_MAX_PENDING: '3' });
    // Power actions work from `enroll`, so no task finishes before the measurement starts.
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await h.enroll({ name: `p${i}`, driver_info: { fake_power_ms: 10_000 } }));
    const power = (id: string, target: string) => h!.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target } });
    for (const id of ids.slice(0, 3)) {
      expect((await power(id, 'power on')).statusCode).toBe(202);
      await h.settle();
    }

    // No task has finished yet: the no-data default.
    const before = await power(ids[3]!, 'power on');
    const b1 = expectProblem(before, 503, 'overloaded');
    const noData = Number(before.headers['retry-after']);
    expect(noData).toBe(30);
    expect(b1['drain_rate_per_s']).toBe(0);

    // 3 tasks finish over 10 s of the fake clock.
    h.clock.advance(10_000);
    await waitFor(() => pending() === 0, { what: 'the power actions finish' });
    expect((await power(ids[3]!, 'power on')).statusCode).toBe(202);
    for (const id of ids.slice(0, 2)) expect((await power(id, 'power off')).statusCode).toBe(202);
    await h.settle();
    expect(pending()).toBe(3);

    const after = await power(ids[2]!, 'power off');
    const b2 = expectProblem(after, 503, 'overloaded');
    expect(b2['drain_rate_per_s']).toBe(0.3);
    // One task over the limit at 0.3 tasks/s: ceil(1 / 0.3) = 4 s.
    expect(after.headers['retry-after']).toBe('4');
    expect(Number(after.headers['retry-after'])).not.toBe(noData);
    expect(b2['pending_tasks']).toBe(3);
  });
});


describe('503 overloaded while the process is saturated (load shedding)', () => {
  // Pressure is forced through the heap limit: 1 MB is always exceeded once the first reading is
  // taken, so the test waits for that reading (a condition), never for time to pass.
  const reading = (hh: Harness): Promise<void> =>
    waitFor(() => hh.ic.app.memoryUsage().heapUsed > 0, { what: 'the first pressure reading' });

  it('refuses commands with Retry-After before running them, and keeps answering reads, health, readiness and metrics', async () => {
    h = await createHarness({ IRONCLAD_TOKENS: 'tok-a=acme:member', IRONCLAD_SHED_HEAP_MB: '1', IRONCLAD_SHED_SAMPLE_MS: '10' });
    await reading(h);
    const head = await h.store.headPosition();
    const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, token: 'tok-a' });
    const b = expectProblem(r, 503, 'overloaded');
    expect(r.headers['retry-after']).toBe('1');
    expect(b['retry_after_s']).toBe(1);
    expect(b['pressure']).toBe('heapUsedBytes');
    expect(b['detail']).toMatch(/heap used \d+ MB/);
    expect(await h.store.headPosition()).toBe(head);
    expectProblem(await h.req({ method: 'PUT', url: '/v1/nodes/00000000-0000-4000-8000-000000000001/states/power', payload: { target: 'power on' }, token: 'tok-a' }), 503, 'overloaded');
    // Shed before authentication: a flood without a valid token costs no more than one with it.
    expectProblem(await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' } }), 503, 'overloaded');
    expect(await h.store.headPosition()).toBe(head);
    // Reads do no work worth refusing (and task polls must not be delayed by a Retry-After).
    expect((await h.req({ method: 'GET', url: '/v1/nodes', token: 'tok-a' })).statusCode).toBe(200);
    expectProblem(await h.req({ method: 'GET', url: '/v1/tasks' }), 401, 'unauthorized');
    for (const url of ['/healthz', '/readyz', '/metrics']) expect((await h.req({ method: 'GET', url })).statusCode, url).toBe(200);
  });

  it('admits everything while the readings are under the limits', async () => {
    h = await createHarness({ IRONCLAD_SHED_HEAP_MB: '1000000', IRONCLAD_SHED_SAMPLE_MS: '10' });
    await reading(h);
    expect(h.ic.app.isUnderPressure()).toBe(false);
    const id = await h.enroll({ name: 'calm' });
    const r = await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target: 'power on' } });
    expect(r.statusCode, r.body).toBe(202);
  });
});
