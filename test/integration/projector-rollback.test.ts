/**
 * A projector batch whose transaction fails is retried by the subscription; the states folded
 * (and rows written) for it were rolled back, so the retry must start again from the committed
 * rows: an event folded twice would queue a task twice.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqlite } from '../../src/adapters/sqlite/open.js';
import { createSqliteEventStore } from '../../src/adapters/sqlite/event-store.js';
import { createProjector } from '../../src/app/projector.js';
import { createNodesReadModel } from '../../src/app/read-models/nodes.js';
import { createReadModelSchema } from '../../src/app/read-models/schema.js';
import { createTasksReadModel } from '../../src/app/read-models/tasks.js';
import type { Logger } from '../../src/ports/logger.js';
import { waitFor } from '../support/wait-for.js';

const quiet: Logger = { info() {}, warn() {}, error() {}, debug() {}, child: () => quiet };

describe('projector: a failed batch', () => {
  const cleanup: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  it('is folded again from the committed rows when the subscription retries it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ironclad-rollback-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const db = openSqlite(join(dir, 'ironclad.db'));
    const failures: unknown[] = [];
    const store = createSqliteEventStore(db, { retryDelayMs: () => 1, logError: (_m, err) => failures.push(err) });
    createReadModelSchema(db);
    const nodes = createNodesReadModel(db);
    const projector = createProjector({ store, db, nodes, tasks: createTasksReadModel(db), log: quiet });
    cleanup.push(async () => {
      await projector.close();
      await store.close();
      db.close();
    });
    await projector.start();
    const stream = 'node-n1';
    const enrolled = await store.append(stream, [{
      id: 'e1', type: 'NodeEnrolled', metadata: {},
      data: { name: 'n1', owner: 'default', driver: 'fake', driver_info: {}, resource_class: 'x', properties: {}, traits: [] },
    }], 'no_stream');
    expect(await projector.waitFor(enrolled.position, 5_000)).toBe(true);

    // The task row's INSERT fails once, after the node's state was folded in the same batch.
    let fail = true;
    db.function('fail_once', () => (fail ? 1 : 0));
    db.exec("CREATE TEMP TRIGGER boom BEFORE INSERT ON rm_tasks WHEN fail_once() = 1 BEGIN SELECT RAISE(ABORT, 'boom'); END");
    const created = await store.append(stream, [{
      id: 'e2', type: 'TaskCreated', metadata: {},
      data: { task_id: 't1', action: 'power on', kind: 'power', params: {}, queued: true, requested_by: 'p' },
    }], 0);
    await waitFor(() => failures.length > 0);
    fail = false;
    expect(await projector.waitFor(created.position, 5_000)).toBe(true);

    expect(String(failures[0])).toContain('boom');
    const row = db.prepare("SELECT state FROM rm_nodes WHERE id = 'n1'").get() as { state: string };
    expect(JSON.parse(row.state)).toMatchObject({ queue: ['t1'], revision: 1 });
    expect(nodes.get('n1')).toMatchObject({ queue: ['t1'], revision: 1 });
    expect(db.prepare('SELECT id, seq, state FROM rm_tasks').all()).toEqual([{ id: 't1', seq: 1, state: 'queued' }]);
  });
});
