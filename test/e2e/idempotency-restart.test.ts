/**
 * api.md "Idempotency": keys survive restarts. The real service answers commands sent with an
 * Idempotency-Key, is killed (SIGKILL) or stopped (SIGTERM), restarts on the same data directory,
 * and must replay the very same answers — not run the commands a second time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, stopAllServers, tempDir, type HttpResponse, type ServerProcess } from '../support/server-process.js';

const TOKENS = 'tok-a=acme:member,tok-b=beta:member';
const auth = (token: string, key: string): Record<string, string> => ({ authorization: `Bearer ${token}`, 'idempotency-key': key });

/** The same answer again, flagged as a replay. */
function expectReplay(first: HttpResponse, again: HttpResponse): void {
  expect(again.status, again.text).toBe(first.status);
  expect(again.text).toBe(first.text);
  expect(again.headers.get('idempotent-replayed')).toBe('true');
  for (const h of ['location', 'etag', 'ironclad-position', 'content-type']) expect(again.headers.get(h), h).toBe(first.headers.get(h));
}

describe('Idempotency-Key across restarts of the real service', () => {
  let dir: ReturnType<typeof tempDir> | null = null;
  afterEach(async () => {
    await stopAllServers();
    dir?.remove();
    dir = null;
  });

  it('replays the stored answers after SIGKILL and after SIGTERM, and runs nothing twice', { timeout: 120_000 }, async () => {
    dir = tempDir();
    const env = { IRONCLAD_TOKENS: TOKENS };
    // verify takes a minute of real time: the manage task is still running at each stop.
    const enrollBody = { name: 'idem-1', driver: 'fake', resource_class: 'baremetal', driver_info: { fake_verify_ms: 60_000 } };
    const send = {
      enroll: (s: ServerProcess, token = 'tok-a') => s.http('POST', '/v1/nodes', enrollBody, auth(token, 'enroll-1')),
      manage: (s: ServerProcess, id: string) => s.http('PUT', `/v1/nodes/${id}/states/provision`, { target: 'manage' }, auth('tok-a', 'manage-1')),
    };

    const first = await startServer({ dataDir: dir.path, env });
    const enrolled = await send.enroll(first);
    expect(enrolled.status, enrolled.text).toBe(201);
    expect(enrolled.headers.get('idempotent-replayed')).toBeNull();
    const id = enrolled.json.id as string;
    const managed = await send.manage(first, id);
    expect(managed.status, managed.text).toBe(202);
    expect(managed.headers.get('ironclad-position')).toMatch(/^\d+$/);
    const taskId = managed.json.id as string;
    expect((await first.kill('SIGKILL')).signal).toBe('SIGKILL');

    const second = await startServer({ dataDir: dir.path, env });
    expectReplay(enrolled, await send.enroll(second));
    const replayed = await send.manage(second, id);
    expectReplay(managed, replayed);
    expect(replayed.json.id).toBe(taskId);
    // A different request under a remembered key is still refused.
    const reused = await second.http('PUT', `/v1/nodes/${id}/states/provision`, { target: 'inspect' }, auth('tok-a', 'manage-1'));
    expect(reused.status, reused.text).toBe(422);
    expect(reused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(reused.json.code).toBe('idempotency_key_reused');
    const stop = await second.kill('SIGTERM');
    expect(stop).toEqual({ code: 0, signal: null });

    const third = await startServer({ dataDir: dir.path, env });
    expectReplay(enrolled, await send.enroll(third));
    expectReplay(managed, await send.manage(third, id));
    // Nothing ran twice: one node, one task for it.
    const bearer = { authorization: 'Bearer tok-a', 'ironclad-position': String(managed.headers.get('ironclad-position')) };
    const nodes = await third.http('GET', '/v1/nodes', undefined, bearer);
    expect(nodes.json.items.map((n: any) => n.id)).toEqual([id]);
    const tasks = await third.http('GET', `/v1/tasks?resource_id=${id}`, undefined, bearer);
    expect(tasks.json.items.map((t: any) => t.id)).toEqual([taskId]);
    // Keys are per tenant, after a restart too: tenant b's "enroll-1" is a new request.
    const other = await send.enroll(third, 'tok-b');
    expect(other.status, other.text).toBe(201);
    expect(other.headers.get('idempotent-replayed')).toBeNull();
    expect(other.json.id).not.toBe(id);
    expect(other.json.owner).toBe('beta');
  });
});
