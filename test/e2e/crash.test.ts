/**
 * Invariant 3 (nothing acknowledged is lost) and 5 (idempotent everywhere) across a real crash:
 * the service is SIGKILLed while deploys run, restarted on the same data directory, and every
 * deploy it had accepted must finish exactly once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, stopAllServers, tempDir, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait-for.js';
import { awaitTask, driveToAvailable, enrollFake, expectDeployedOnce, mapLimit, provision, type Accepted } from './fleet.js';

const NODES = 50;
/** Long enough that the kill lands while deploys are running (all 50 start within a few hundred ms). */
const DEPLOY_MS = 2_000;

describe('a crash (kill -9) while deploys are running', () => {
  let dir: ReturnType<typeof tempDir> | null = null;
  afterEach(async () => {
    await stopAllServers();
    dir?.remove();
    dir = null;
  });

  it('completes every accepted deploy exactly once after a restart', { timeout: 180_000 }, async () => {
    dir = tempDir();
    const first = await startServer({ dataDir: dir.path });
    const driverInfo = { fake_deploy_ms: DEPLOY_MS, fake_verify_ms: 0, fake_clean_ms: 0 };
    const ids = await mapLimit(Array.from({ length: NODES }, (_, i) => i), 25, async (i) => {
      const id = await enrollFake(first, driverInfo, `crash-${String(i).padStart(2, '0')}`);
      await driveToAvailable(first, id);
      return id;
    });
    const available = await first.http('GET', `/v1/nodes?provision_state=available&limit=1000`);
    expect(available.json.items).toHaveLength(NODES);

    // Every deploy is sent and answered before the crash, so "accepted" is unambiguous.
    const answers = await Promise.all(ids.map((id) => first.http('PUT', `/v1/nodes/${id}/states/provision`, { target: 'deploy' })));
    const accepted = new Map<string, Accepted>();
    answers.forEach((r, i) => {
      if (r.status === 202) accepted.set(ids[i]!, { task_id: r.json.id, position: r.headers.get('ironclad-position') });
    });
    expect(answers.filter((r) => r.status !== 202).map((r) => r.text), 'deploys refused').toEqual([]);
    expect(accepted.size).toBe(NODES);

    // Some deploys are running (so not all finished): crash now.
    let deploying = 0;
    await waitFor(async () => {
      const r = await first.http('GET', '/v1/nodes?provision_state=deploying&limit=1000');
      deploying = r.json.items.length;
      return deploying > 0;
    }, { timeoutMs: 30_000, what: 'some node is deploying' });
    const exit = await first.kill('SIGKILL');
    const killedAt = Date.now();
    expect(exit.signal).toBe('SIGKILL');

    const second = await startServer({ dataDir: dir.path, readyTimeoutMs: 60_000 });
    const tasks = await Promise.all([...accepted.values()].map((a) => awaitTask(second, a, 60_000)));
    expect(tasks.filter((t) => t.state !== 'succeeded'), 'deploy tasks that did not succeed').toEqual([]);

    const finishedAfterRestart: string[] = [];
    await mapLimit([...accepted], 10, async ([id, a]) => {
      const items = await expectDeployedOnce(second, id, a.task_id);
      const done = items.find((e) => e.type === 'TaskFinished' && e.data.task_id === a.task_id);
      if (Date.parse(done.time) > killedAt) finishedAfterRestart.push(id);
    });
    // Proof that the crash hit running deploys (else this test would prove nothing).
    expect(finishedAfterRestart.length, `deploys finished after the restart (${deploying} were deploying at the kill)`).toBeGreaterThan(0);

    const active = await second.http('GET', '/v1/nodes?provision_state=active&limit=1000');
    expect(active.json.items.map((n: any) => n.id).sort()).toEqual([...ids].sort());
    const pending = await second.http('GET', '/v1/nodes?has_pending=true&limit=1000');
    expect(pending.json.items).toEqual([]);
  });
});
