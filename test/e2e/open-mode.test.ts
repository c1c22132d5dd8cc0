/**
 * Open mode and token configuration of the real process (api.md "Auth", "Running"): without
 * tokens the service runs open only on a loopback address (and warns); on any other address it
 * refuses to start, naming IRONCLAD_TOKENS; a malformed token entry stops the start; no token
 * value ever reaches the process's output.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freePort, runCli, startServer, stopAllServers, tempDir, type ServerProcess } from '../support/server-process.js';

const ADMIN_TOKEN = 'tok-ADMIN-e2e-7f3a91';
const MEMBER_TOKEN = 'tok-MEMBER-e2e-c04d22';
const READER_TOKEN = 'tok-READER-e2e-5be610';
const TOKENS = `${ADMIN_TOKEN}=ops:admin,${MEMBER_TOKEN}=acme:member,${READER_TOKEN}=acme:reader`;
const ALL_TOKENS = [ADMIN_TOKEN, MEMBER_TOKEN, READER_TOKEN];

const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

function expectNoTokenIn(text: string): void {
  for (const t of ALL_TOKENS) expect(text.includes(t), `token ${t} appears in the output`).toBe(false);
}

describe('starting the real process', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('ironclad-open-mode-');
  });
  afterEach(async () => {
    await stopAllServers();
    dir.remove();
  });
  afterAll(async () => stopAllServers());

  /** Runs `ironclad serve` expecting it to exit by itself. */
  const serveExpectingExit = async (env: Record<string, string>) =>
    runCli(['serve'], { PORT: String(await freePort()), IRONCLAD_DATA_DIR: dir.path, IRONCLAD_POWER_SYNC_S: '0', ...env }, 30_000);

  it('refuses to start open on a non-loopback address, naming IRONCLAD_TOKENS, and exits non-zero', async () => {
    for (const HOST of ['0.0.0.0', '::', '10.1.2.3']) {
      const r = await serveExpectingExit({ HOST });
      expect(r.code, `HOST=${HOST}: ${r.stdout}${r.stderr}`).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr).toContain('IRONCLAD_TOKENS');
      expect(r.stderr).toContain(`HOST=${HOST}`);
      expect(r.stderr).toMatch(/refusing to start/i);
      expect(r.stdout).not.toMatch(/listening/);
    }
  });

  it('refuses a token file with no tokens in it on a non-loopback address', async () => {
    const file = join(dir.path, 'tokens.txt');
    writeFileSync(file, '# no tokens yet\n\n');
    const r = await serveExpectingExit({ HOST: '0.0.0.0', IRONCLAD_TOKEN_FILE: file });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('IRONCLAD_TOKENS');
  });

  it('starts on 0.0.0.0 with tokens set, answers /healthz via 127.0.0.1, and requires a token', async () => {
    const s = await startServer({ dataDir: dir.path, env: { HOST: '0.0.0.0', IRONCLAD_TOKENS: TOKENS } });
    const health = await s.http('GET', '/healthz');
    expect(health.status).toBe(200);
    expect(health.json).toEqual({ status: 'ok' });
    expect(s.output()).toContain('listening');
    const anon = await s.http('GET', '/v1/nodes');
    expect(anon.status).toBe(401);
    expect(anon.json.code).toBe('unauthorized');
    expect(anon.headers.get('www-authenticate')).toBe('Bearer');
    const created = await s.http('POST', '/v1/nodes', { driver: 'fake', resource_class: 'rc' }, bearer(MEMBER_TOKEN));
    expect(created.status, created.text).toBe(201);
    expect(created.json.owner).toBe('acme');
    const denied = await s.http('POST', '/v1/nodes', { driver: 'fake', resource_class: 'rc' }, bearer(READER_TOKEN));
    expect(denied.status).toBe(403);
    expect((await s.http('GET', '/v1/nodes', undefined, bearer(ADMIN_TOKEN))).json.items).toHaveLength(1);
    expectNoTokenIn(s.output());
    expectNoTokenIn(s.bodies.join('\n'));
    expect(s.output()).not.toMatch(/running OPEN/);
  });

  it('starts on 0.0.0.0 with tokens from IRONCLAD_TOKEN_FILE', async () => {
    const file = join(dir.path, 'tokens.txt');
    writeFileSync(file, `# ironclad tokens\n${ADMIN_TOKEN}=ops:admin\n${MEMBER_TOKEN}=acme:member\n`);
    const s = await startServer({ dataDir: dir.path, env: { HOST: '0.0.0.0', IRONCLAD_TOKEN_FILE: file } });
    expect((await s.http('GET', '/v1/nodes')).status).toBe(401);
    expect((await s.http('GET', '/v1/nodes', undefined, bearer(MEMBER_TOKEN))).status).toBe(200);
    expectNoTokenIn(s.output());
  });

  it('starts open on 127.0.0.1 without tokens, logs a warning, and serves the "default" tenant as admin', async () => {
    const s = await startServer({ dataDir: dir.path, env: { HOST: '127.0.0.1' } });
    const created = await s.http('POST', '/v1/nodes', { driver: 'fake', resource_class: 'rc', name: 'open-1' });
    expect(created.status, created.text).toBe(201);
    expect(created.json.owner).toBe('default');
    expect((await s.http('GET', '/v1/nodes/open-1')).status).toBe(200);
    // The warning is a pino line at level warn (40) saying the service runs open.
    const lines = s.stdout.join('').split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const warning = lines.find((l) => l.level === 40 && /no tokens configured/i.test(l.msg) && /OPEN/.test(l.msg));
    expect(warning, s.output()).toBeDefined();
    expect(warning.host).toBe('127.0.0.1');
  });

  it('exits non-zero on a malformed IRONCLAD_TOKENS entry, naming the variable and the entry, never its value', async () => {
    const cases: { spec: string; entry: number; leaked: string }[] = [
      { spec: `${MEMBER_TOKEN}=acme:superuser`, entry: 1, leaked: MEMBER_TOKEN },
      { spec: `${ADMIN_TOKEN}=ops:admin,${READER_TOKEN}-acme-reader`, entry: 2, leaked: READER_TOKEN },
      { spec: `${ADMIN_TOKEN}=ops:admin,${MEMBER_TOKEN}=bad tenant:member`, entry: 2, leaked: MEMBER_TOKEN },
    ];
    for (const c of cases) {
      const r = await serveExpectingExit({ HOST: '127.0.0.1', IRONCLAD_TOKENS: c.spec });
      expect(r.code, `${c.spec}: ${r.stdout}${r.stderr}`).not.toBe(0);
      expect(r.code).not.toBeNull();
      expect(r.stderr).toContain('IRONCLAD_TOKENS');
      expect(r.stderr).toContain(`entry ${c.entry}`);
      expect(r.stderr).toMatch(/token=tenant:role/);
      expect(r.stdout).not.toMatch(/listening/);
      expect(`${r.stdout}${r.stderr}`).not.toContain(c.leaked);
      expectNoTokenIn(`${r.stdout}${r.stderr}`);
    }
  });

  it('never writes a configured token to its output, whatever the requests carry', async () => {
    const s: ServerProcess = await startServer({ dataDir: dir.path, env: { IRONCLAD_TOKENS: TOKENS, IRONCLAD_LOG_LEVEL: 'trace' } });
    const id = (await s.http('POST', '/v1/nodes', { driver: 'fake', resource_class: 'rc' }, bearer(MEMBER_TOKEN))).json.id;
    await s.http('GET', `/v1/nodes/${id}`, undefined, bearer(READER_TOKEN));
    await s.http('PUT', `/v1/nodes/${id}/states/provision`, { target: 'manage' }, bearer(READER_TOKEN)); // 403
    await s.http('GET', '/v1/nodes', undefined, { authorization: `Bearer ${ADMIN_TOKEN}x` }); // 401, near miss
    await s.http('GET', '/v1/nodes', undefined, { authorization: `Basic ${Buffer.from(`u:${ADMIN_TOKEN}`).toString('base64')}` });
    await s.http('GET', '/no/such/route', undefined, bearer(ADMIN_TOKEN));
    await s.http('POST', '/v1/nodes', { driver: 'nope' }, bearer(ADMIN_TOKEN)); // 400
    await s.kill('SIGTERM');
    expect(s.output().length).toBeGreaterThan(0);
    expectNoTokenIn(s.output());
    expectNoTokenIn(s.bodies.join('\n'));
  });
});
