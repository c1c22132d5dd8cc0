/**
 * SIGTERM is a graceful stop (api.md "Running"): the process stops taking requests, hands back
 * in-flight work and exits 0 in bounded time; after a restart the interrupted deploys complete.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, stopAllServers, tempDir, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait-for.js';
import { awaitTask, driveToAvailable, enrollFake, expectDeployedOnce, mapLimit, provision, type Accepted } from './fleet.js';

const NODES = 10;
const DEPLOY_MS = 2_000;
/** How long a graceful stop may take (it must not wait out driver steps or long-polls). */
const STOP_BOUND_MS = 10_000;

async function fleetDeploying(s: ServerProcess, prefix: string, deployMs = DEPLOY_MS): Promise<Map<string, Accepted>> {
  const driverInfo = { fake_deploy_ms: deployMs, fake_verify_ms: 0, fake_clean_ms: 0 };
  const ids = await mapLimit(Array.from({ length: NODES }, (_, i) => i), NODES, async (i) => {
    const id = await enrollFake(s, driverInfo, `${prefix}-${i}`);
    await driveToAvailable(s, id);
    return id;
  });
  const accepted = new Map<string, Accepted>();
  for (const [i, a] of (await Promise.all(ids.map((id) => provision(s, id, 'deploy')))).entries()) accepted.set(ids[i]!, a);
  await waitFor(async () => (await s.http('GET', '/v1/nodes?provision_state=deploying&limit=1000')).json.items.length > 0, {
    timeoutMs: 30_000, what: 'some node is deploying',
  });
  return accepted;
}

async function expectAllDeployedAfterRestart(dataDir: string, accepted: Map<string, Accepted>): Promise<void> {
  const again = await startServer({ dataDir, readyTimeoutMs: 60_000 });
  const tasks = await Promise.all([...accepted.values()].map((a) => awaitTask(again, a, 60_000)));
  expect(tasks.filter((t) => t.state !== 'succeeded'), 'deploy tasks that did not succeed').toEqual([]);
  for (const [id, a] of accepted) await expectDeployedOnce(again, id, a.task_id);
}

describe('a graceful stop (SIGTERM) while deploys are running', () => {
  let dir: ReturnType<typeof tempDir> | null = null;
  afterEach(async () => {
    await stopAllServers();
    dir?.remove();
    dir = null;
  });

  it('exits 0 promptly, and the deploys complete after a restart', { timeout: 120_000 }, async () => {
    dir = tempDir();
    const s = await startServer({ dataDir: dir.path });
    const accepted = await fleetDeploying(s, 'term');

    const t0 = Date.now();
    const exit = await s.kill('SIGTERM', STOP_BOUND_MS);
    expect(exit, s.output()).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(STOP_BOUND_MS);
    expect(s.stdout.join('')).toContain('SIGTERM received');
    expect(s.stderr.join('')).not.toMatch(/shutdown failed|unhandled|uncaught/i);

    await expectAllDeployedAfterRestart(dir.path, accepted);
  });

  it('does not wait out clients that are long-polling tasks', { timeout: 120_000 }, async () => {
    dir = tempDir();
    const s = await startServer({ dataDir: dir.path });
    // Deploys long enough that every poll is still held when the stop begins.
    const accepted = await fleetDeploying(s, 'poll', 10_000);
    // Clients hold `Prefer: wait=60` on every deploy task while the stop begins.
    const polls = [...accepted.values()].map((a) =>
      s.http('GET', `/v1/tasks/${a.task_id}`, undefined, { prefer: 'wait=60', ...(a.position ? { 'ironclad-position': a.position } : {}) })
        .then((r) => r.status, () => 'connection closed' as const));
    // The request log shows when the server holds every poll (the only outside view of it).
    // (The deploy tasks were never read before, so each one's log line is its poll.)
    const held = (): number => {
      const log = s.stdout.join('');
      return [...accepted.values()].filter((a) => log.includes(`"url":"/v1/tasks/${a.task_id}"`)).length;
    };
    await waitFor(() => held() === accepted.size, { timeoutMs: 15_000, what: 'the server received every long-poll' });

    const t0 = Date.now();
    const exit = await s.kill('SIGTERM', STOP_BOUND_MS);
    expect(exit, s.output()).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(STOP_BOUND_MS);
    // Each held poll is answered at once with the task as it is (202, retry later), not cut off.
    expect(await Promise.all(polls)).toEqual([...accepted.values()].map(() => 202));

    await expectAllDeployedAfterRestart(dir.path, accepted);
  });
});
