import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { verifySignature } from '../../src/app/callbacks/signature.js';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';

interface Received {
  status: number;
  body: string;
  signature: string;
  attempt: string;
}

/** A real HTTP receiver on loopback that answers with the given statuses in turn (then 200). */
async function receiver(statuses: number[]): Promise<{ url: string; got: Received[]; server: Server }> {
  const got: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const status = statuses[got.length] ?? 200;
      got.push({ status, body, signature: String(req.headers['ironclad-signature']), attempt: String(req.headers['ironclad-delivery-attempt']) });
      res.writeHead(status, status >= 300 && status < 400 ? { location: 'http://127.0.0.1:9/elsewhere' } : {}).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, got, server };
}

const SECRET = 'whsec-test-1';

describe('callbacks: signed, retried with backoff, recorded on the task', () => {
  let h: Harness | null = null;
  let server: Server | null = null;
  afterEach(async () => {
    await h?.close();
    server?.close();
    h = null;
  });

  async function deployWithCallback(url: string): Promise<{ id: string; taskId: string }> {
    const id = await h!.enroll({ driver_info: { fake_deploy_ms: 0, fake_verify_ms: 0, fake_clean_ms: 0 } });
    await h!.provision(id, 'manage');
    await h!.driveUntil(id, 'manageable');
    await h!.provision(id, 'provide');
    await h!.driveUntil(id, 'available');
    const r = await h!.provision(id, 'deploy', { callback_url: url });
    expect(r.statusCode).toBe(202);
    expect(r.json().callback).toMatchObject({ url, state: 'pending', attempts: 0 });
    return { id, taskId: r.json().id };
  }

  it('a receiver failing twice then succeeding gets exactly one successful, validly signed delivery', async () => {
    h = await createHarness({ IRONCLAD_WEBHOOK_SECRET: SECRET });
    const rx = await receiver([500, 503]);
    server = rx.server;
    const { id, taskId } = await deployWithCallback(rx.url);
    await h.driveUntil(id, 'active');
    await waitFor(() => rx.got.length === 1, { what: 'first attempt' });
    await waitFor(async () => (await h!.task(taskId)).callback.attempts === 1, { what: 'attempt 1 recorded' });
    const afterFirst = await h.task(taskId);
    expect(afterFirst.callback).toMatchObject({ state: 'pending', attempts: 1, last_error: 'answered 500' });
    h.clock.advance(2000);
    await waitFor(() => rx.got.length === 2, { what: 'second attempt after 2 s' });
    await waitFor(async () => (await h!.task(taskId)).callback.attempts === 2, { what: 'attempt 2 recorded' });
    h.clock.advance(4000);
    await waitFor(async () => (await h!.task(taskId)).callback.state === 'delivered', { what: 'delivered' });
    expect(rx.got.map((g) => g.status)).toEqual([500, 503, 200]);
    expect(rx.got.map((g) => g.attempt)).toEqual(['1', '2', '3']);
    const ok = rx.got[2]!;
    expect(verifySignature(SECRET, ok.signature, ok.body)).toBe(true);
    expect(verifySignature('another-secret', ok.signature, ok.body)).toBe(false);
    expect(JSON.parse(ok.body)).toMatchObject({ id: taskId, state: 'succeeded', action: 'deploy' });
    h.clock.advance(600_000);
    expect(rx.got).toHaveLength(3);
    const hist = await h.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000` });
    const attempts = hist.json().items.filter((e: any) => e.type === 'CallbackAttempted');
    expect(attempts.map((e: any) => e.data.outcome)).toEqual(['failed', 'failed', 'delivered']);
  });

  it('keeps retrying across a restart of Ironclad between attempts, and delivers once', async () => {
    h = await createHarness({ IRONCLAD_WEBHOOK_SECRET: SECRET }, { persistent: true });
    const rx = await receiver([500]);
    server = rx.server;
    const { id, taskId } = await deployWithCallback(rx.url);
    await h.driveUntil(id, 'active');
    await waitFor(async () => (await h!.task(taskId)).callback.attempts === 1, { what: 'attempt 1 recorded' });
    await h.restart();
    expect(rx.got).toHaveLength(1);
    h.clock.advance(2000);
    await waitFor(async () => (await h!.task(taskId)).callback.state === 'delivered', { what: 'delivered after restart' });
    expect(rx.got.map((g) => g.status)).toEqual([500, 200]);
    expect(verifySignature(SECRET, rx.got[1]!.signature, rx.got[1]!.body)).toBe(true);
  });

  it('gives up after the last attempt and marks the callback failed; redirects are not followed', async () => {
    h = await createHarness({ IRONCLAD_WEBHOOK_SECRET: SECRET, IRONCLAD_CALLBACK_MAX_ATTEMPTS: '3' });
    const rx = await receiver([302, 302, 302, 302]);
    server = rx.server;
    const { id, taskId } = await deployWithCallback(rx.url);
    await h.driveUntil(id, 'active');
    for (const [n, wait] of [[1, 2000], [2, 4000]] as const) {
      await waitFor(async () => (await h!.task(taskId)).callback.attempts === n, { what: `attempt ${n}` });
      h.clock.advance(wait);
    }
    await waitFor(async () => (await h!.task(taskId)).callback.state === 'failed', { what: 'failed for good' });
    const t = await h.task(taskId);
    expect(t.callback).toMatchObject({ attempts: 3, state: 'failed', next_attempt_at: null, last_error: 'redirect 302 not followed' });
    expect(rx.got).toHaveLength(3);
  });

  it('refuses a callback_url outside IRONCLAD_CALLBACK_ALLOW with 400 naming the field', async () => {
    h = await createHarness({ IRONCLAD_TOKENS: 'tok=acme:member', IRONCLAD_CALLBACK_ALLOW: 'hooks.example.com,10.1.0.0/16' });
    const r0 = await h.req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'x' }, token: 'tok' });
    const id = r0.json().id;
    const r = await h.provision(id, 'manage', { callback_url: 'http://127.0.0.1:8080/x' }, 'tok');
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'validation_failed', errors: [{ path: 'body.callback_url' }] });
    const ok = await h.provision(id, 'manage', { callback_url: 'http://10.1.2.3/x' }, 'tok');
    expect(ok.statusCode).toBe(202);
  });
});
