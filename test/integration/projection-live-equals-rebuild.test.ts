import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';
import { STACK_ENV, testTemplate } from '../support/stack-api.js';

/**
 * The live projector takes the actor's folded state for events this process appended
 * (src/runtime/folded-states.ts) and folds everything else; a rebuild folds every event. Both must
 * write the same bytes in every read-model row.
 */
function dump(dataDir: string): Record<string, unknown[]> {
  const db = new Database(join(dataDir, 'ironclad.db'), { readonly: true });
  try {
    return {
      nodes: db.prepare('SELECT * FROM rm_nodes ORDER BY id').all(),
      tasks: db.prepare('SELECT * FROM rm_tasks ORDER BY id').all(),
      claims: db.prepare('SELECT * FROM rm_node_claims ORDER BY node_id').all(),
      stacks: db.prepare('SELECT * FROM rm_stacks ORDER BY id').all(),
      checkpoint: db.prepare('SELECT * FROM rm_checkpoints').all(),
    };
  } finally {
    db.close();
  }
}

describe('live projection = rebuild (embedded SQLite)', () => {
  let h: Harness | null = null;
  afterEach(async () => {
    await h?.close();
    h = null;
  });

  it('writes byte-identical node, task, claim and stack rows live and when rebuilt from the log', async () => {
    h = await createHarness(STACK_ENV, { persistent: true });
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await h.enroll({ name: `n${i}`, driver_info: { fake_deploy_ms: 0 } }));
    for (const id of ids.slice(0, 2)) {
      expect((await h.provision(id, 'manage')).statusCode).toBe(202);
      await h.driveUntil(id, 'manageable');
      expect((await h.provision(id, 'provide')).statusCode).toBe(202);
      await h.driveUntil(id, 'available');
    }
    // Queued and coalesced power tasks, several commands per node in one turn (one append group).
    const power = (id: string, target: string) =>
      h!.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target, on_busy: 'queue' } });
    const answers = await Promise.all(ids.flatMap((id) => [power(id, 'power on'), power(id, 'power off'), power(id, 'power off')]));
    expect(answers.map((r) => r.statusCode)).toEqual(answers.map(() => 202));
    for (const r of answers) await h.finishTask(r.json().id);
    await h.req({ method: 'PUT', url: `/v1/nodes/${ids[2]}/maintenance`, payload: { reason: 'disk' } });
    await h.req({ method: 'PATCH', url: `/v1/nodes/${ids[3]}`, payload: { properties: { cpus: 8 } } });
    const stack = await h.createStack({ name: 'st', template: testTemplate({ a: { value: 1 }, b: { value: { get_resource: 'a' } } }) });
    expect(stack.statusCode, stack.body).toBe(202);
    await h.finishTask(stack.json().task.id);
    await h.settle();

    const dataDir = h.ic.config.IRONCLAD_DATA_DIR;
    await h.ic.close();
    const live = dump(dataDir);
    expect(live['tasks']).toHaveLength(2 * 2 + 4 * 2 + 1); // the second 'power off' of each node coalesced
    expect(live['stacks']).toHaveLength(1);
    const db = new Database(join(dataDir, 'ironclad.db'));
    db.exec('DELETE FROM rm_checkpoints');
    db.close();
    await h.restart();
    await h.settle();
    await h.ic.close();
    expect(dump(dataDir)).toEqual(live);
  });
});
