/**
 * `ironclad tail` as users run it: `node dist/src/cli/main.js tail` (dist/ is built by the vitest
 * globalSetup) against a real nats-server fed by an Ironclad with NATS_URL. Output is read line by
 * line as it arrives; the process is stopped with SIGTERM and must exit 0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Notifier } from '../../src/app/notifications/notifier.js';
import { eventSubject } from '../../src/ports/bus.js';
import type { StoredEvent } from '../../src/ports/event-store.js';
import { eventEnvelope } from '../../src/app/nodes/replay.js';
import { createHarness, type Harness } from '../support/harness.js';
import { natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';
import { childEnv, CLI, REPO_ROOT, runCli } from '../support/server-process.js';
import { waitFor } from '../support/wait-for.js';

const WAIT = { timeoutMs: 15_000 };

interface Tail {
  child: ChildProcess;
  lines(): string[];
  stderr(): string;
  stop(): Promise<number | null>;
}

function startTail(args: string[], env: Record<string, string>): Tail {
  const child = spawn(process.execPath, [CLI, 'tail', ...args], { cwd: REPO_ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    child,
    lines: () => out.split('\n').filter(Boolean),
    stderr: () => err,
    async stop() {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), 10_000)))]);
      clearTimeout(timer);
      if (code === 'timeout') {
        child.kill('SIGKILL');
        throw new Error(`ironclad tail did not exit on SIGTERM\n${err}`);
      }
      return code;
    },
  };
}

if (natsServerOrSkip('ironclad tail')) {
  describe('ironclad tail', () => {
    let server: NatsServer;
    let h: Harness;
    const tails: Tail[] = [];
    let nodeA = '';
    let nodeB = '';

    const head = async (): Promise<StoredEvent[]> => {
      const all = await h.store.readAll();
      await waitFor(() => (h.ic.internals['notifier'] as Notifier).position() === all[all.length - 1]!.position, WAIT);
      return all;
    };
    const tail = (args: string[]): Tail => {
      const t = startTail(args, { NATS_URL: server.url });
      tails.push(t);
      return t;
    };

    beforeAll(async () => {
      server = await startNatsServer();
      h = await createHarness({ NATS_URL: server.url });
      nodeA = await h.enroll({ name: 'tail-a' });
      nodeB = await h.enroll({ name: 'tail-b' });
      expect((await h.provision(nodeA, 'manage')).statusCode).toBe(202);
      await h.driveUntil(nodeA, 'manageable');
    });
    afterEach(async () => {
      for (const t of tails.splice(0)) if (t.child.exitCode === null) t.child.kill('SIGKILL');
    });
    afterAll(async () => {
      await h?.close();
      await server?.stop();
    });

    it('prints every notification from --since, one line each: sequence, subject, type, revision, state fields', async () => {
      const stored = await head();
      const t = tail(['--since', '1']);
      await waitFor(() => t.lines().length >= stored.length, { ...WAIT, what: `tail printed ${stored.length} lines` });
      const lines = t.lines();
      expect(lines).toHaveLength(stored.length);
      for (const [i, line] of lines.entries()) {
        const env = eventEnvelope(stored[i]!);
        expect(line.startsWith(`${i + 1} ${eventSubject('default', env)} ${env.type} rev=${env.revision}`)).toBe(true);
      }
      const succeeded = lines.find((l) => l.includes(' OperationSucceeded '));
      expect(succeeded).toMatch(/ from="verifying" to="manageable"/);
      expect(await t.stop()).toBe(0);
    });

    it('follows live notifications of one resource only with --resource', async () => {
      const before = await head();
      const t = tail(['--resource', nodeB]);
      await waitFor(() => /following/.test(t.stderr()), { ...WAIT, what: 'tail subscribed' });
      expect((await h.provision(nodeB, 'manage')).statusCode).toBe(202);
      await h.driveUntil(nodeB, 'manageable');
      const fresh = (await head()).slice(before.length);
      const ofB = fresh.filter((e) => e.stream === `node-${nodeB}`);
      expect(ofB.length).toBeGreaterThan(0);
      await waitFor(() => t.lines().length >= ofB.length, WAIT);
      expect(t.lines().map((l) => l.split(' ').slice(1, 4).join(' '))).toEqual(ofB.map((e) => {
        const env = eventEnvelope(e);
        return `${eventSubject('default', env)} ${env.type} rev=${env.revision}`;
      }));
      expect(await t.stop()).toBe(0);
    });

    it('prints the envelope as JSON with --json', async () => {
      const stored = await head();
      const t = tail(['--since', '1', '--json']);
      await waitFor(() => t.lines().length >= stored.length, WAIT);
      const first = JSON.parse(t.lines()[0]!);
      expect(first).toMatchObject({ sequence: 1, msg_id: stored[0]!.id, event: { id: stored[0]!.id, type: 'NodeEnrolled', revision: 0 } });
      expect(await t.stop()).toBe(0);
    });

    it('explains what is missing instead of hanging', async () => {
      const noUrl = await runCli(['tail'], {}, 20_000);
      expect(noUrl.code).toBe(2);
      expect(noUrl.stderr).toMatch(/NATS_URL is not set/);
      const badSince = await runCli(['tail', '--since', 'x'], { NATS_URL: server.url }, 20_000);
      expect(badSince.code).toBe(2);
      expect(badSince.stderr).toMatch(/--since must be a stream sequence/);
    });
  });
} else {
  describe.skip('ironclad tail', () => {
    it('needs nats-server', () => undefined);
  });
}
