/**
 * Stack operations through the tasks contract (api.md "Tasks"): long-poll, idempotency,
 * coalescing, listing, signed callbacks; stack events on SSE for the right tenant; and the
 * crash story (work orders and the stack timeout survive a restart).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { verifySignature } from '../../src/app/callbacks/signature.js';
import { replayCommand } from '../../src/cli/replay.js';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';
import { STACK_ENV, testTemplate } from '../support/stack-api.js';
import { waitFor } from '../support/wait-for.js';

describe('stack tasks', () => {
  let h: Harness | null = null;
  let server: Server | null = null;
  afterEach(async () => {
    await h?.close();
    server?.close();
    h = null;
    server = null;
  });

  it('Prefer: wait on the create answers 200 {stack, task} once the stack is complete', async () => {
    h = await createHarness(STACK_ENV);
    const r = await h.req({ method: 'POST', url: '/v1/stacks', payload: { name: 'lp', template: testTemplate({ a: {}, b: { depends_on: ['a'] } }) }, headers: { prefer: 'wait=10' } });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.headers['preference-applied']).toBe('wait=10');
    expect(r.json().task).toMatchObject({ state: 'succeeded', resource_type: 'stack', action: 'create' });
    expect(r.json().stack).toMatchObject({ name: 'lp', status: 'CREATE_COMPLETE' });
  });

  it('GET /v1/tasks/{id} long-polls a stack task until it ends', async () => {
    h = await createHarness(STACK_ENV);
    const c = await h.createStack({ name: 'held', template: testTemplate({ a: { hold_on: ['create'] } }) });
    const { stack, task } = c.json();
    const polling = h.req({ method: 'GET', url: `/v1/tasks/${task.id}`, headers: { prefer: 'wait=30' } });
    await waitFor(async () => (await h!.stack(stack.id)).resources[0].status_reason === 'Waiting for signal', { what: 'a held' });
    const s = await h.req({ method: 'POST', url: `/v1/stacks/${stack.id}/resources/a/signal`, payload: { status: 'complete' } });
    expect(s.statusCode, s.body).toBe(200);
    const done = await polling;
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({ id: task.id, state: 'succeeded' });
    const now = await h.req({ method: 'GET', url: `/v1/tasks/${task.id}` });
    expect(now.statusCode).toBe(200);
  });

  it('Idempotency-Key replays a stack create; the same key with another body is 422', async () => {
    h = await createHarness(STACK_ENV);
    const body = { name: 'idem', template: testTemplate({ a: {} }) };
    const first = await h.req({ method: 'POST', url: '/v1/stacks', payload: body, headers: { 'idempotency-key': 'k1' } });
    expect(first.statusCode).toBe(202);
    const again = await h.req({ method: 'POST', url: '/v1/stacks', payload: body, headers: { 'idempotency-key': 'k1' } });
    expect(again.statusCode).toBe(202);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.json()).toEqual(first.json());
    const other = await h.req({ method: 'POST', url: '/v1/stacks', payload: { ...body, name: 'idem2' }, headers: { 'idempotency-key': 'k1' } });
    expectProblem(other, 422, 'idempotency_key_reused');
    const list = await h.req({ method: 'GET', url: '/v1/stacks' });
    expect(list.json().items.map((s: any) => s.name)).toEqual(['idem']);
    expect((await h.task(first.json().task.id)).idempotency_key).toBe('k1');
  });

  it('an identical update while it runs is coalesced; tasks list newest first, filtered by stack', async () => {
    h = await createHarness(STACK_ENV);
    const c = await h.createStack({ name: 'co', template: testTemplate({ a: {} }) });
    const id = c.json().stack.id;
    await h.finishTask(c.json().task.id);
    const t2 = testTemplate({ a: { value: 2, hold_on: ['update'] } });
    const u1 = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, payload: { template: t2 } });
    const u2 = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, payload: { template: t2 } });
    expect(u2.statusCode).toBe(202);
    expect(u2.json()).toMatchObject({ id: u1.json().id, coalesced: true });
    await h.settle();
    const tasks = await h.req({ method: 'GET', url: `/v1/tasks?resource_type=stack&resource_id=${id}` });
    expect(tasks.json().items.map((t: any) => [t.action, t.state, t.coalesced_count])).toEqual([['update', 'running', 1], ['create', 'succeeded', 0]]);
    expect((await h.req({ method: 'GET', url: `/v1/tasks?resource_type=node` })).json().items).toEqual([]);
  });

  it('a stack task\'s callback is delivered, signed, and recorded on the task', async () => {
    const secret = 'whsec-stacks';
    h = await createHarness({ ...STACK_ENV, IRONCLAD_WEBHOOK_SECRET: secret });
    const got: { body: string; signature: string }[] = [];
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        got.push({ body, signature: String(req.headers['ironclad-signature']) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const c = await h.createStack({ name: 'cb', template: testTemplate({ a: {} }), callback_url: url });
    expect(c.json().task.callback).toMatchObject({ url, state: 'pending', attempts: 0 });
    await h.finishTask(c.json().task.id);
    await waitFor(() => got.length === 1, { what: 'the callback' });
    expect(verifySignature(secret, got[0]!.signature, got[0]!.body)).toBe(true);
    expect(JSON.parse(got[0]!.body)).toMatchObject({ id: c.json().task.id, resource_type: 'stack', state: 'succeeded' });
    await waitFor(async () => (await h!.task(c.json().task.id)).callback.state === 'delivered', { what: 'delivery recorded' });
    const hist = (await h.req({ method: 'GET', url: `/v1/stacks/${c.json().stack.id}/history?limit=1000` })).json().items;
    expect(hist.at(-1)).toMatchObject({ type: 'CallbackAttempted', data: { outcome: 'delivered', attempt: 1 } });
  });

  it('stack events reach GET /v1/events for the stack\'s tenant only', async () => {
    h = await createHarness({ ...STACK_ENV, IRONCLAD_TOKENS: 'ta=acme:member,tb=globex:member' });
    const base = await h.ic.app.listen({ host: '127.0.0.1', port: 0 });
    const open = async (token: string) => {
      const ac = new AbortController();
      const res = await fetch(`${base}/v1/events`, { headers: { authorization: `Bearer ${token}` }, signal: ac.signal });
      const got: any[] = [];
      const reading = (async () => {
        const reader = res.body!.getReader();
        const dec = new TextDecoder();
        let buf = '';
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            buf += dec.decode(value, { stream: true });
            let i;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const data = /^data: (.*)$/m.exec(buf.slice(0, i));
              buf = buf.slice(i + 2);
              if (data) got.push(JSON.parse(data[1]!));
            }
          }
        } catch {
          /* aborted */
        }
      })();
      return { got, close: async () => { ac.abort(); await reading; } };
    };
    const a = await open('ta');
    const b = await open('tb');
    const c = await h.createStack({ name: 'sse', template: testTemplate({ a: {} }) }, 'ta');
    await h.finishTask(c.json().task.id, { token: 'ta' });
    await waitFor(() => a.got.some((e) => e.type === 'TaskFinished'), { what: 'TaskFinished over SSE' });
    const marker = await h.createStack({ name: 'marker', template: testTemplate({ a: {} }) }, 'tb');
    await waitFor(() => b.got.some((e) => e.entity_id === marker.json().stack.id), { what: 'globex sees its own stack' });
    await a.close();
    await b.close();
    expect(a.got[0]).toMatchObject({ type: 'StackCreateRequested', entity_type: 'stack', entity_id: c.json().stack.id, revision: 0, data: { owner: 'acme' } });
    expect(a.got.map((e) => e.type)).toEqual(expect.arrayContaining(['TaskCreated', 'TraversalStarted', 'ResourceActionStarted', 'ResourceActionCompleted', 'TraversalCompleted']));
    expect(b.got.some((e) => e.entity_id === c.json().stack.id)).toBe(false);
  });

  it('after a restart, work orders that had not reported run again and the stack timeout is re-armed', async () => {
    h = await createHarness(STACK_ENV, { persistent: true });
    const slow = await h.createStack({ name: 'slow', template: testTemplate({ a: { create_delay_ms: 10_000 }, b: { depends_on: ['a'] } }) });
    const stuck = await h.createStack({ name: 'stuck', template: testTemplate({ a: { create_delay_ms: 3_600_000 } }), timeout_s: 60 });
    await h.settle();
    h.clock.advance(5_000); // halfway through a's delay: nothing reported yet
    await h.restart();
    expect((await h.stack('slow')).status).toBe('CREATE_IN_PROGRESS');
    expect((await h.finishTask(slow.json().task.id, { stepMs: 1000 })).state).toBe('succeeded');
    const s = await h.stack('slow');
    expect(s.resources.map((r: any) => r.status)).toEqual(['CREATE_COMPLETE', 'CREATE_COMPLETE']);
    const t = await h.finishTask(stuck.json().task.id, { stepMs: 5000 });
    expect(t).toMatchObject({ state: 'failed', error: { code: 'deadline_expired' } });
    expect((await h.stack('stuck')).status).toBe('CREATE_FAILED');
  });

  it('`ironclad replay stack <id>` folds the stored stream through the stack machine', async () => {
    h = await createHarness(STACK_ENV, { persistent: true });
    const c = await h.createStack({ name: 'rp', template: testTemplate({ a: {}, b: { depends_on: ['a'] } }) });
    await h.finishTask(c.json().task.id);
    const id = c.json().stack.id;
    const config = h.ic.config;
    await h.close();
    h = null;
    const lines: string[] = [];
    expect(await replayCommand(config, id, undefined, true, (l) => lines.push(l), 'stack')).toBe(0);
    const steps = lines.map((l) => JSON.parse(l));
    expect(steps[0]).toMatchObject({ revision: 0, event: { type: 'StackCreateRequested' }, state: { status: 'INIT_COMPLETE', name: 'rp' } });
    expect(steps.at(-1).state).toMatchObject({ status: 'CREATE_COMPLETE', resources: [{ name: 'a' }, { name: 'b' }] });
    const text: string[] = [];
    expect(await replayCommand(config, id, 3, false, (l) => text.push(l), 'stack')).toBe(0);
    expect(text).toHaveLength(4);
    expect(text[2]).toContain('status: CREATE_IN_PROGRESS');
  });
});
