/**
 * Issue 3, "many processes share the work": three real `ironclad serve` processes, one real
 * nats-server and one shared event store file. 100 nodes go enroll → manage → provide → deploy
 * through the three APIs; one process is SIGKILLed while it runs deploys. Then:
 *   - every accepted task completed exactly once (one TaskCreated, one TaskFinished per task);
 *   - every node is `active`, through exactly the expected provision path;
 *   - each step's driver work ran once, except the steps the dead process was running, which ran
 *     again elsewhere (at-least-once) — and every outcome was applied once;
 *   - the notification stream, read from sequence 1, holds every event of the log exactly once,
 *     in revision order per entity.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNatsBus } from '../../src/adapters/nats/bus.js';
import type { Notification } from '../../src/ports/bus.js';
import { startCluster, type Cluster } from '../support/cluster.js';
import { natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';
import { stopAllServers, type ServerProcess } from '../support/server-process.js';
import { waitFor } from '../support/wait-for.js';
import { awaitTask, driveToAvailable, enrollFake, expectDeployedOnce, mapLimit, type Accepted } from './fleet.js';

const NODES = 100;
/** Long enough that the kill lands while the victim runs deploys; short enough to keep the test fast. */
const DEPLOY_MS = 4_000;
/** A dead worker's unacked order is delivered again after this (the survivors heartbeat every third of it). */
const ACK_WAIT_S = 3;
/** The victim's partitions are taken over this long after its last renewal. */
const LEASE_TTL_MS = 3_000;

if (natsServerOrSkip('cluster e2e')) {
  describe('three processes share one fleet over NATS; one is SIGKILLed mid-deploy', () => {
    let nats: NatsServer;
    let cluster: Cluster | null = null;

    beforeAll(async () => {
      nats = await startNatsServer();
    });
    afterAll(async () => {
      await stopAllServers();
      cluster?.remove();
      await nats?.stop();
    });

    it('completes every accepted task exactly once, runs each step as at-least-once allows, and notifies every event once in order', { timeout: 150_000 }, async () => {
      cluster = await startCluster({
        size: 3, natsUrl: nats.url,
        env: { IRONCLAD_WORK_ACK_WAIT_S: String(ACK_WAIT_S), IRONCLAD_LEASE_TTL_MS: String(LEASE_TTL_MS), IRONCLAD_LOG_LEVEL: 'info' },
      });
      const [a, b, victim] = cluster.members as [ServerProcess, ServerProcess, ServerProcess];
      const api = (i: number): ServerProcess => cluster!.members[i % 3]!;
      const driverInfo = { fake_deploy_ms: DEPLOY_MS, fake_verify_ms: 0, fake_clean_ms: 0 };

      // enroll, manage and provide through the three APIs
      const ids = await mapLimit(Array.from({ length: NODES }, (_, i) => i), 30, async (i) => {
        const id = await enrollFake(api(i), driverInfo, `cl-${String(i).padStart(3, '0')}`);
        await driveToAvailable(api(i), id);
        return id;
      });

      // deploy through the three APIs; every answer arrives before the kill, so "accepted" is unambiguous
      const answers = await mapLimit(ids, 50, (id, i) => api(i + 1).http('PUT', `/v1/nodes/${id}/states/provision`, { target: 'deploy' }));
      expect(answers.filter((r) => r.status !== 202).map((r) => r.text), 'deploys refused').toEqual([]);
      const accepted = new Map<string, Accepted>(ids.map((id, i) => [id, { task_id: answers[i]!.json.id, position: answers[i]!.headers.get('ironclad-position') }]));

      // SIGKILL the victim while it is running deploys
      const runningOnVictim = (): string[] => {
        const done = new Set(cluster!.logLines(victim, 'work order done').map((l) => l.step_id));
        return cluster!.logLines(victim, 'work order running').filter((l) => l.operation === 'deploy' && !done.has(l.step_id)).map((l) => l.step_id);
      };
      await waitFor(() => runningOnVictim().length > 0, { timeoutMs: 30_000, what: 'the victim runs deploys' });
      expect((await victim.kill('SIGKILL')).signal).toBe('SIGKILL');
      const interrupted = runningOnVictim();

      // every accepted task ends, on the survivors
      const tasks = await mapLimit([...accepted.values()], 50, (t, i) => awaitTask(i % 2 ? a : b, t, 90_000));
      expect(tasks.filter((t) => t.state !== 'succeeded'), 'deploy tasks that did not succeed').toEqual([]);
      for (const [id, t] of accepted) await expectDeployedOnce(a, id, t.task_id);
      const active = await b.http('GET', '/v1/nodes?provision_state=active&limit=1000');
      expect(active.json.items.map((n: any) => n.id).sort()).toEqual([...ids].sort());

      // exactly once in the log: one TaskCreated and one TaskFinished per task
      const log = cluster.events();
      const count = (type: string): Map<string, number> => {
        const m = new Map<string, number>();
        for (const e of log) if (e.type === type) m.set(e.data.task_id, (m.get(e.data.task_id) ?? 0) + 1);
        return m;
      };
      const created = count('TaskCreated');
      const finished = count('TaskFinished');
      expect(created.size, 'tasks: enroll has none; manage, provide, deploy per node').toBe(NODES * 3);
      expect([...created].filter(([, n]) => n !== 1), 'tasks created more than once').toEqual([]);
      expect([...finished.keys()].sort()).toEqual([...created.keys()].sort());
      expect([...finished].filter(([, n]) => n !== 1), 'tasks finished more than once').toEqual([]);

      // driver work: every step ran; twice only if the victim was running it when it died
      const runs = new Map<string, { member: ServerProcess; delivery: number }[]>();
      for (const m of cluster.members) {
        for (const l of cluster.logLines(m, 'work order running')) runs.set(l.step_id, [...(runs.get(l.step_id) ?? []), { member: m, delivery: l.delivery }]);
      }
      const steps = log.filter((e) => e.type === 'StepStarted' || e.type === 'PowerActionStarted').map((e) => e.data.step_id as string);
      expect(steps.filter((s) => !runs.has(s)), 'steps whose driver work never ran').toEqual([]);
      const repeated = [...runs].filter(([, r]) => r.length > 1);
      const crashed = (step: string, r: { member: ServerProcess }[]): boolean =>
        r.length === 2 && r.filter((x) => x.member === victim).length === 1 && interrupted.includes(step);
      expect(repeated.filter(([step, r]) => !crashed(step, r)), 'steps run more than once without a crash').toEqual([]);
      // proof the crash hit running deploys and a survivor took them over (else this test would prove nothing);
      // a step whose outcome the victim reported just before dying is not run again (its order is stale).
      const takenOver = interrupted.filter((step) => runs.get(step)!.some((r) => r.member !== victim));
      expect(takenOver.length, `interrupted deploy steps run again by a survivor (of ${interrupted.length})`).toBeGreaterThan(0);

      // notifications: from sequence 1, every event once, in revision order per entity
      const reader = await createNatsBus({ servers: nats.url, log: pino({ level: 'silent' }), setup: false });
      try {
        const got: Notification[] = [];
        const sub = await reader.subscribeEvents({ fromSequence: 1 }, (n) => void got.push(n));
        await waitFor(() => got.length >= log.length, { timeoutMs: 30_000, what: `${log.length} notifications` });
        await sub.close();
        expect(new Set(got.map((n) => n.msgId)).size, 'notifications published twice').toBe(got.length);
        expect(new Set(got.map((n) => n.msgId))).toEqual(new Set(log.map((e) => e.id)));
        const perEntity = new Map<string, number[]>();
        for (const n of got) perEntity.set(n.envelope.entity_id, [...(perEntity.get(n.envelope.entity_id) ?? []), n.envelope.revision]);
        for (const [entity, revisions] of perEntity) expect(revisions, `notification order of ${entity}`).toEqual(revisions.map((_, i) => i));
      } finally {
        await reader.close();
      }
    });
  });
}
