import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

/** Read models are derived data: with the checkpoint gone they are rebuilt from the log and equal what they were. */
describe('projections rebuild from the log (embedded SQLite)', () => {
  let h: Harness | null = null;
  afterEach(async () => {
    await h?.close();
    h = null;
  });

  it('rebuilds nodes, tasks and name claims identically when the checkpoint is gone', async () => {
    h = await createHarness({}, { persistent: true });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await h.enroll({ name: `r${i}`, driver_info: { fake_deploy_ms: 0 } }));
    await h.provision(ids[0]!, 'manage');
    await h.driveUntil(ids[0]!, 'manageable');
    await h.provision(ids[0]!, 'provide');
    await h.driveUntil(ids[0]!, 'available');
    await h.req({ method: 'PUT', url: `/v1/nodes/${ids[1]}/maintenance`, payload: { reason: 'disk' } });
    await h.settle();
    const nodesBefore = (await h.req({ method: 'GET', url: '/v1/nodes' })).json();
    const tasksBefore = (await h.req({ method: 'GET', url: '/v1/tasks' })).json();

    const dataDir = h.ic.config.IRONCLAD_DATA_DIR;
    await h.ic.close();
    const db = new Database(join(dataDir, 'ironclad.db'));
    db.exec("DELETE FROM rm_checkpoints; UPDATE rm_nodes SET provision_state = 'corrupted'; DELETE FROM name_claims;");
    db.close();
    await h.restart();
    await h.settle();

    const nodesAfter = (await h.req({ method: 'GET', url: '/v1/nodes' })).json();
    const tasksAfter = (await h.req({ method: 'GET', url: '/v1/tasks' })).json();
    expect(nodesAfter).toEqual(nodesBefore);
    expect(tasksAfter).toEqual(tasksBefore);
    const dup = await h.req({ method: 'POST', url: '/v1/nodes', payload: { name: 'r1', driver: 'fake', resource_class: 'x' } });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().code).toBe('name_conflict');
  });
});
