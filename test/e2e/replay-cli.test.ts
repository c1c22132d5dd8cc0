/**
 * `ironclad replay node <id>` (debug plane): folds the stream stored by a real server and prints
 * every step; it must agree with the API's history-at-revision, stop at --until, run no effects,
 * and never print a driver secret (nor may the server's logs or answers).
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startServer, stopAllServers, tempDir, type CliResult, type ServerProcess } from '../support/server-process.js';
import { awaitTask, enrollFake, history, provision } from './fleet.js';

const SECRET = 's3cret-pw';
const FIELDS = ['provision_state', 'target_provision_state', 'power_state', 'maintenance', 'revision'] as const;

describe('ironclad replay node', () => {
  let dir: ReturnType<typeof tempDir>;
  let server: ServerProcess;
  let nodeId: string;
  /** What the API said about each revision (GET /v1/nodes/{id}/history/{revision}), before the stop. */
  const atRevision: any[] = [];
  const cliRuns: CliResult[] = [];
  const replay = async (...args: string[]): Promise<CliResult> => {
    const r = await runCli(['replay', 'node', ...args], { IRONCLAD_DATA_DIR: dir.path });
    cliRuns.push(r);
    return r;
  };
  const jsonLines = (r: CliResult): any[] => r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const eventCount = (): number => {
    const db = new Database(join(dir.path, 'ironclad.db'), { readonly: true });
    try {
      return (db.prepare('SELECT count(*) AS n FROM events').get() as { n: number }).n;
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    dir = tempDir();
    server = await startServer({ dataDir: dir.path, env: { IRONCLAD_LOG_LEVEL: 'trace' } });
    const info = { ipmi_address: '192.0.2.10', ipmi_username: 'admin', ipmi_password: SECRET, fake_verify_ms: 0, fake_clean_ms: 0, fake_deploy_ms: 0 };
    // An invalid request carrying the secret: the 400 must not echo it.
    const bad = await server.http('POST', '/v1/nodes', { driver: 'fake', resource_class: 42, driver_info: info });
    expect(bad.status, bad.text).toBe(400);
    nodeId = await enrollFake(server, info, 'replay-1');
    // A patch that re-sends the secret records a NodeUpdated event carrying it (sealed).
    const patched = await server.http('PATCH', `/v1/nodes/${nodeId}`, { driver_info: { ipmi_password: SECRET } });
    expect(patched.status, patched.text).toBe(200);
    for (const verb of ['manage', 'provide', 'deploy']) {
      const task = await awaitTask(server, await provision(server, nodeId, verb));
      expect(task.state, `${verb}: ${JSON.stringify(task.error)}`).toBe('succeeded');
    }
    const node = await server.http('GET', `/v1/nodes/${nodeId}`);
    expect(node.json.provision_state).toBe('active');
    await server.http('GET', `/v1/tasks?resource_id=${nodeId}`);
    for (const e of await history(server, nodeId)) {
      const r = await server.http('GET', `/v1/nodes/${nodeId}/history/${e.revision}`);
      expect(r.status, r.text).toBe(200);
      atRevision.push(r.json);
    }
    expect(atRevision[atRevision.length - 1].revision).toBe(node.json.revision);
    expect(await server.kill('SIGTERM')).toEqual({ code: 0, signal: null });
  }, 120_000);

  afterAll(async () => {
    await stopAllServers();
    dir?.remove();
  });

  it('prints every revision in --json, agreeing with the API history at that revision', async () => {
    const before = eventCount();
    const r = await replay(nodeId, '--json');
    expect(r.code, r.stderr).toBe(0);
    const lines = jsonLines(r);
    expect(lines.map((l) => l.revision)).toEqual(atRevision.map((h) => h.revision));
    lines.forEach((line, i) => {
      const api = atRevision[i];
      for (const f of FIELDS) expect(line.state[f], `${f} at revision ${line.revision}`).toEqual(api.state[f]);
      expect(line.event.revision).toBe(line.revision);
      expect({ id: line.event.id, type: line.event.type }).toEqual({ id: api.event.id, type: api.event.type });
    });
    expect(lines[lines.length - 1].state.provision_state).toBe('active');
    expect(eventCount(), 'replay appended nothing').toBe(before);
  }, 60_000);

  it('stops at --until <revision>, in --json and in text', async () => {
    const deploy = atRevision.find((h) => h.event.type === 'ProvisionActionStarted' && h.event.data.action === 'deploy');
    const until = deploy.revision as number;
    const json = await replay(nodeId, '--json', '--until', String(until));
    expect(json.code, json.stderr).toBe(0);
    const lines = jsonLines(json);
    expect(lines.map((l) => l.revision)).toEqual(Array.from({ length: until + 1 }, (_, i) => i));
    const last = lines[lines.length - 1];
    for (const f of FIELDS) expect(last.state[f], f).toEqual(deploy.state[f]);
    expect(last.state.provision_state).toBe('deploying');

    const text = await replay(nodeId, '--until', String(until));
    expect(text.code, text.stderr).toBe(0);
    const heads = text.stdout.split('\n').filter((l) => l.startsWith('#')).map((l) => Number(/^#(\d+) /.exec(l)![1]));
    expect(heads).toEqual(Array.from({ length: until + 1 }, (_, i) => i));
    expect(text.stdout).toContain('state: deploying');
  }, 60_000);

  it('prints every step in text form', async () => {
    const r = await replay(nodeId);
    expect(r.code, r.stderr).toBe(0);
    const heads = r.stdout.split('\n').filter((l) => l.startsWith('#'));
    expect(heads).toHaveLength(atRevision.length);
    expect(r.stdout).toContain('state: active');
  }, 60_000);

  it('exits 1 with a message for an unknown node, 2 for a bad --until', async () => {
    const unknown = randomUUID();
    const r = await replay(unknown);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(unknown);
    const bad = await replay(nodeId, '--until', 'soon');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--until/);
  }, 60_000);

  it('never shows the driver secret: replay output, server logs, API answers, data at rest', async () => {
    if (cliRuns.length === 0) await replay(nodeId, '--json');
    for (const r of cliRuns) {
      expect(r.stdout).not.toContain(SECRET);
      expect(r.stderr).not.toContain(SECRET);
    }
    expect(cliRuns.some((r) => r.stdout.includes('******')), 'the secret key is shown redacted').toBe(true);
    expect(server.stdout.join('')).not.toContain(SECRET);
    expect(server.stderr.join('')).not.toContain(SECRET);
    expect(server.bodies.length).toBeGreaterThan(10);
    for (const body of server.bodies) expect(body).not.toContain(SECRET);
    // Secrets are sealed in the events, so the store itself holds no clear copy.
    for (const f of readdirSync(dir.path)) expect(readFileSync(join(dir.path, f)).includes(SECRET), `${f} holds the secret in clear`).toBe(false);
  });
});
