import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

describe('a node through its whole lifecycle with the fake driver', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness();
  });
  afterEach(async () => h.close());

  it('goes enroll → manageable → available → active → available', async () => {
    const id = await h.enroll({ name: 'n1' });
    let r = await h.provision(id, 'manage');
    expect(r.statusCode).toBe(202);
    expect(r.headers['location']).toBe(`/v1/tasks/${r.json().id}`);
    expect(r.headers['ironclad-position']).toMatch(/^\d+$/);
    await h.driveUntil(id, 'manageable');
    r = await h.provision(id, 'provide');
    expect(r.statusCode).toBe(202);
    const n1 = await h.node(id);
    expect(n1.provision_state).toBe('cleaning');
    expect(n1.target_provision_state).toBe('available');
    expect(n1.current_task.id).toBe(r.json().id);
    expect(n1.allowed_actions).toEqual([]);
    await h.driveUntil(id, 'available');
    expect((await h.task(r.json().id)).state).toBe('succeeded');
    r = await h.provision(id, 'deploy');
    await h.driveUntil(id, 'active');
    r = await h.provision(id, 'undeploy');
    const n2 = await h.node(id);
    expect(n2.provision_state).toBe('deleting');
    const done = await h.driveUntil(id, 'available');
    expect(done.target_provision_state).toBeNull();
    expect(done.allowed_actions).toEqual(['active', 'deploy', 'manage']);
    const hist = await h.req({ method: 'GET', url: `/v1/nodes/${id}/history?limit=1000` });
    const states = hist.json().items.filter((e: any) => e.data.to).map((e: any) => e.data.to);
    expect(states).toEqual(['verifying', 'manageable', 'cleaning', 'available', 'deploying', 'active', 'deleting', 'cleaning', 'available']);
  });
});
