/**
 * Secrets never leak (api.md "Node view", decision 0002): driver_info passwords and tokens are
 * sealed in events and shown as "******" everywhere — answers, lists, history, history at a
 * revision, task views, logs and the raw event log — through a whole lifecycle and a PATCH.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { createHarness, type Harness } from '../support/harness.js';
import { createSecretBox, loadSecretKey } from '../../src/adapters/crypto/secret-box.js';
import { openSecrets, redactSecrets, sealSecrets } from '../../src/domain/secrets.js';
import type { NodesReadModel } from '../../src/app/read-models/nodes.js';
import type { TasksReadModel } from '../../src/app/read-models/tasks.js';

const TOKENS = 'tA=acme:member,tAdmin=ops:admin';
const PASSWORD = 'pw-SECRET-123';
const API_TOKEN = 'tok-SECRET-456';
const NEW_PASSWORD = 'pw-NEW-789';
const NESTED_SECRET = 'nested-SECRET-246';
const RESCUE_PASSWORD = 'rescue-SECRET-135';
const ALL_SECRETS = [PASSWORD, API_TOKEN, NEW_PASSWORD, NESTED_SECRET, RESCUE_PASSWORD];

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('secrets in driver_info through a whole lifecycle', () => {
  let h: Harness;
  let id: string;
  /** Every response body the test received. */
  const bodies: string[] = [];
  const req = async (o: InjectOptions & { token?: string }): Promise<LightMyRequestResponse> => {
    const r = await h.req({ token: 'tA', ...o });
    bodies.push(`${o.method} ${o.url} → ${r.statusCode}\n${JSON.stringify(r.headers)}\n${r.body}`);
    return r;
  };
  const node = async (): Promise<Record<string, any>> => {
    await h.settle();
    const r = await req({ method: 'GET', url: `/v1/nodes/${id}` });
    expect(r.statusCode).toBe(200);
    return r.json();
  };
  const driveUntil = async (state: string): Promise<Record<string, any>> => {
    for (let i = 0; i < 400; i++) {
      const n = await node();
      if (n['provision_state'] === state && n['current_task'] === null) return n;
      h.clock.advance(25);
      await tick();
    }
    throw new Error(`node did not reach ${state}`);
  };
  const command = async (url: string, payload: Record<string, unknown>): Promise<string> => {
    const r = await req({ method: 'PUT', url: `/v1/nodes/${id}/states/${url}`, payload });
    expect(r.statusCode, r.body).toBe(202);
    return r.json().id as string;
  };
  const driveTask = async (taskId: string): Promise<void> => {
    for (let i = 0; i < 400; i++) {
      await h.settle();
      const t = (await req({ method: 'GET', url: `/v1/tasks/${taskId}` })).json();
      if (t.state === 'succeeded') return;
      expect(['queued', 'running']).toContain(t.state);
      h.clock.advance(25);
      await tick();
    }
    throw new Error(`task ${taskId} did not succeed`);
  };

  /** Everything an observer could see: bodies, logs, the raw log, history, lists. */
  async function everything(): Promise<Record<string, string>> {
    await h.settle();
    const history = await req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000` });
    const revisions = history.json().items.map((e: any) => e.revision as number);
    const atRevision: string[] = [];
    for (const rev of revisions) atRevision.push((await req({ method: 'GET', url: `/v1/nodes/${id}/history/${rev}` })).body);
    const tasks = await req({ method: 'GET', url: `/v1/tasks?resource_id=${id}&limit=1000` });
    const tasksOne: string[] = [];
    for (const t of tasks.json().items) tasksOne.push((await req({ method: 'GET', url: `/v1/tasks/${t.id}` })).body);
    return {
      responses: bodies.join('\n'),
      history: history.body,
      historyAtRevision: atRevision.join('\n'),
      nodeList: (await req({ method: 'GET', url: '/v1/nodes' })).body,
      adminNodeList: (await req({ method: 'GET', url: '/v1/nodes?limit=1000', token: 'tAdmin' })).body,
      taskList: tasks.body,
      tasks: tasksOne.join('\n'),
      logs: h.logs.join(''),
      store: JSON.stringify(await h.store.readAll()),
      // The read models (SQLite rows: node states with their tasks, task records).
      readModels: JSON.stringify([
        (h.ic.internals['nodesRM'] as NodesReadModel).allLive(),
        (h.ic.internals['tasksRM'] as TasksReadModel).list({}, 1000, null),
      ]),
    };
  }

  function expectNoClearSecret(seen: Record<string, string>, secrets: string[]): void {
    for (const [where, text] of Object.entries(seen)) {
      expect(text.length, `${where} is empty`).toBeGreaterThan(0);
      for (const s of secrets) expect(text.includes(s), `${s} appears in ${where}`).toBe(false);
    }
  }

  beforeAll(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: TOKENS });
    const r = await req({
      method: 'POST', url: '/v1/nodes',
      payload: {
        name: 'secretive', driver: 'fake', resource_class: 'rc',
        driver_info: {
          ipmi_address: '10.0.0.5', ipmi_username: 'admin', ipmi_password: PASSWORD, api_token: API_TOKEN,
          fake_deploy_ms: 0, fake_clean_ms: 0, fake_verify_ms: 0, fake_teardown_ms: 0,
        },
      },
    });
    expect(r.statusCode, r.body).toBe(201);
    id = r.json().id;
  });
  afterAll(async () => h.close());

  it('redacts the secret keys in the 201 answer and keeps the rest', () => {
    const created = JSON.parse(bodies[0]!.split('\n').slice(2).join('\n'));
    expect(created.driver_info).toEqual({
      ipmi_address: '10.0.0.5', ipmi_username: 'admin', ipmi_password: '******', api_token: '******',
      fake_deploy_ms: 0, fake_clean_ms: 0, fake_verify_ms: 0, fake_teardown_ms: 0,
    });
  });

  it('never shows them through manage, provide, deploy, power actions and undeploy', async () => {
    await command('provision', { target: 'manage' });
    await driveUntil('manageable');
    await command('provision', { target: 'provide' });
    await driveUntil('available');
    await driveTask(await command('power', { target: 'power on' }));
    await command('provision', { target: 'deploy' });
    await driveUntil('active');
    await driveTask(await command('power', { target: 'rebooting' }));
    await driveTask(await command('power', { target: 'power off' }));
    await driveTask(await command('power', { target: 'power on' }));
    await command('provision', { target: 'undeploy' });
    const n = await driveUntil('available');
    expect(n.driver_info.ipmi_password).toBe('******');
    expect(n.driver_info.api_token).toBe('******');
    expect(n.driver_info.ipmi_address).toBe('10.0.0.5');

    const seen = await everything();
    expectNoClearSecret(seen, [PASSWORD, API_TOKEN]);
    // The tasks did run: the lifecycle is really in what we searched.
    const tasks = JSON.parse(seen['taskList']!).items.map((t: any) => [t.action, t.state]);
    expect(tasks.map((t: any) => t[0]).reverse()).toEqual(['manage', 'provide', 'power on', 'deploy', 'rebooting', 'power off', 'power on', 'undeploy']);
    expect(new Set(tasks.map((t: any) => t[1]))).toEqual(new Set(['succeeded']));
    // History and the states replayed at each revision show the redaction, not an absence.
    const enrolled = JSON.parse(seen['history']!).items[0];
    expect(enrolled.type).toBe('NodeEnrolled');
    expect(enrolled.data.driver_info).toMatchObject({ ipmi_password: '******', api_token: '******', ipmi_address: '10.0.0.5' });
    const atZero = (await req({ method: 'GET', url: `/v1/nodes/${id}/history/0` })).json();
    expect(atZero.state.driver_info).toMatchObject({ ipmi_password: '******', api_token: '******' });
    expect(atZero.event.data.driver_info).toMatchObject({ ipmi_password: '******', api_token: '******' });
  });

  it('stores them sealed (not dropped): the raw event opens to the clear value with the data dir key', async () => {
    const raw = (await h.store.readStream(`node-${id}`))[0]!;
    const info = raw.data['driver_info'] as Record<string, any>;
    expect(info['ipmi_password']).toMatchObject({ $sealed: expect.stringMatching(/^v1:/) });
    expect(info['api_token']).toMatchObject({ $sealed: expect.stringMatching(/^v1:/) });
    expect(info['ipmi_address']).toBe('10.0.0.5');
    const box = createSecretBox(loadSecretKey(h.ic.config.IRONCLAD_SECRET_KEY, join(h.ic.config.IRONCLAD_DATA_DIR, 'secret.key')));
    expect(box.open(info['ipmi_password'].$sealed)).toBe(PASSWORD);
    expect(box.open(info['api_token'].$sealed)).toBe(API_TOKEN);
  });

  it('never shows a new password set by PATCH, nor echoes it in the PATCH answer', async () => {
    const r = await req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { driver_info: { ipmi_password: NEW_PASSWORD, ipmi_username: 'root' } } });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.body).not.toContain(NEW_PASSWORD);
    expect(r.json().driver_info).toMatchObject({ ipmi_password: '******', api_token: '******', ipmi_username: 'root', ipmi_address: '10.0.0.5' });
    // The node still works after the change (the sealed values are usable).
    await command('provision', { target: 'manage' });
    await driveUntil('manageable');
    const seen = await everything();
    expectNoClearSecret(seen, [PASSWORD, API_TOKEN, NEW_PASSWORD]);
    const updated = (await h.store.readStream(`node-${id}`)).find((e) => e.type === 'NodeUpdated')!;
    const box = createSecretBox(loadSecretKey(h.ic.config.IRONCLAD_SECRET_KEY, join(h.ic.config.IRONCLAD_DATA_DIR, 'secret.key')));
    const info = (updated.data['changes'] ?? updated.data) as Record<string, any>;
    const sealed = (info['driver_info'] as Record<string, any>)['ipmi_password'];
    expect(box.open(sealed.$sealed)).toBe(NEW_PASSWORD);
  });

  it('never shows a secret nested inside driver_info', async () => {
    const r = await req({
      method: 'POST', url: '/v1/nodes',
      payload: { name: 'nested', driver: 'fake', resource_class: 'rc', driver_info: { redfish: { address: 'https://bmc', password: NESTED_SECRET }, fake_verify_ms: 0 } },
    });
    expect(r.statusCode, r.body).toBe(201);
    expect(r.json().driver_info).toEqual({ redfish: { address: 'https://bmc', password: '******' }, fake_verify_ms: 0 });
    const nid = r.json().id;
    const m = await req({ method: 'PUT', url: `/v1/nodes/${nid}/states/provision`, payload: { target: 'manage' } });
    expect(m.statusCode).toBe(202);
    await h.settle();
    expectNoClearSecret(await everything(), [NESTED_SECRET]);
  });

  it('never shows a rescue_password sent with a provision command', async () => {
    await command('provision', { target: 'provide' });
    await driveUntil('available');
    await command('provision', { target: 'deploy' });
    await driveUntil('active');
    const taskId = await command('provision', { target: 'rescue', rescue_password: RESCUE_PASSWORD });
    const t = (await req({ method: 'GET', url: `/v1/tasks/${taskId}` })).json();
    expect(t.params.rescue_password).toBe('******');
    await driveUntil('rescue');
    expectNoClearSecret(await everything(), ALL_SECRETS);
  });
});

describe('sealing, redacting and opening driver_info', () => {
  const box = createSecretBox(randomBytes(32));
  const info = {
    ipmi_address: '10.0.0.5', ipmi_password: PASSWORD, port: 623,
    redfish: { address: 'https://bmc', auth: { password: NESTED_SECRET, user: 'u' } },
    tokens: [API_TOKEN], keys: [{ name: 'k', secret: 's-SECRET-1' }], empty_password: null,
  };

  it('seals every secret at any depth, and opens back to the original for drivers', () => {
    const sealed = sealSecrets(info, box);
    const text = JSON.stringify(sealed);
    for (const s of [PASSWORD, NESTED_SECRET, API_TOKEN, 's-SECRET-1']) expect(text).not.toContain(s);
    expect(sealed['ipmi_address']).toBe('10.0.0.5');
    expect((sealed['redfish'] as any).auth.user).toBe('u');
    expect(openSecrets(sealed, box)).toEqual(info);
    // Sealing twice changes nothing (PATCH merges sealed values with new ones).
    expect(sealSecrets(sealed, box)).toEqual(sealed);
  });

  it('redacts every secret at any depth, sealed or not', () => {
    const expected = {
      ipmi_address: '10.0.0.5', ipmi_password: '******', port: 623,
      redfish: { address: 'https://bmc', auth: { password: '******', user: 'u' } },
      tokens: '******', keys: [{ name: 'k', secret: '******' }], empty_password: '******',
    };
    expect(redactSecrets(sealSecrets(info, box))).toEqual(expected);
    expect(redactSecrets(info)).toEqual(expected);
  });
});
