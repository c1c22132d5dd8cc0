import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';

/** Deadlines are data in the log: a restart neither loses nor resets them. */
describe('durable deadlines across a restart (embedded SQLite)', () => {
  let h: Harness | null = null;
  afterEach(async () => {
    await h?.close();
    h = null;
  });

  async function waitingNode(): Promise<{ id: string; deployTask: string; deadline: string }> {
    const id = await h!.enroll({ driver_info: { fake_deploy: 'wait', fake_deploy_ms: 0, callback_timeout_s: 30 } });
    await h!.provision(id, 'manage');
    await h!.driveUntil(id, 'manageable');
    await h!.provision(id, 'provide');
    await h!.driveUntil(id, 'available');
    const r = await h!.provision(id, 'deploy');
    // Each turn yields once (appends are group-committed on the next turn of the event loop).
    for (let i = 0; i < 50 && (await h!.node(id)).provision_state !== 'wait call-back'; i++) {
      h!.clock.advance(10);
      await new Promise((r) => setImmediate(r));
    }
    const hist = (await h!.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000` })).json().items;
    const waiting = hist.find((e: any) => e.type === 'OperationWaiting');
    expect(waiting).toBeTruthy();
    return { id, deployTask: r.json().id, deadline: waiting.data.deadline_at };
  }

  it('fires a deadline that passed while the process was down, right after the restart', async () => {
    h = await createHarness({}, { persistent: true });
    const { id, deployTask, deadline } = await waitingNode();
    await h.ic.close();
    h.clock.set(Date.parse(deadline) + 1000); // time passes while nothing runs
    await h.restart();
    await waitFor(async () => (await h!.node(id)).provision_state === 'deploy failed', { what: 'deadline fired after restart' });
    const n = await h.node(id);
    expect(n.last_error).toContain('deadline');
    const t = await h.task(deployTask);
    expect(t).toMatchObject({ state: 'failed', error: { code: 'deadline_expired' } });
  });

  it('keeps the original deadline (not reset by the restart) and fires it when it comes', async () => {
    h = await createHarness({}, { persistent: true });
    const { id, deadline } = await waitingNode();
    await h.restart();
    h.clock.set(Date.parse(deadline) - 1000);
    await h.settle();
    expect((await h.node(id)).provision_state).toBe('wait call-back');
    h.clock.advance(1000);
    await waitFor(async () => (await h!.node(id)).provision_state === 'deploy failed', { what: 'deadline fired on time' });
  });
});
