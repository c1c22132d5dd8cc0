/** The tasks read model: every task of every entity, newest first, with its filters. */
import type Database from 'better-sqlite3';
import { applyTaskEvent, taskIdOf, type TaskRecord } from '../../domain/tasks.js';
import type { StoredEvent } from '../../ports/event-store.js';
import { decodeCursor, encodeCursor, type Page } from './nodes.js';

export interface TaskFilters {
  owner?: string;
  resource_id?: string;
  resource_type?: string;
  state?: string;
  action?: string;
  since?: string;
}

export function createTasksReadModel(db: Database.Database) {
  const getStmt = db.prepare('SELECT task FROM rm_tasks WHERE id = ?');
  const insert = db.prepare(`INSERT INTO rm_tasks (id, seq, owner, resource_type, resource_id, state, action, created_at, task)
    VALUES (@id, @seq, @owner, @resource_type, @resource_id, @state, @action, @created_at, @task)
    ON CONFLICT(id) DO UPDATE SET state=excluded.state, task=excluded.task`);
  const maxSeq = db.prepare('SELECT coalesce(max(seq), 0) AS m FROM rm_tasks');
  const countActive = db.prepare("SELECT count(*) AS n FROM rm_tasks WHERE state IN ('queued','running')");
  let seq = (maxSeq.get() as { m: number }).m;
  let pending = (countActive.get() as { n: number }).n;
  let finished = 0;
  const isPending = (t: TaskRecord | null): boolean => t !== null && (t.state === 'queued' || t.state === 'running');

  function get(id: string): TaskRecord | null {
    const row = getStmt.get(id) as { task: string } | undefined;
    return row ? (JSON.parse(row.task) as TaskRecord) : null;
  }

  /** Applies an event to the task it names; returns the updated task (or null if none). */
  function apply(e: StoredEvent, entity: { resource_type: 'node' | 'stack'; resource_id: string; owner: string }): TaskRecord | null {
    const id = taskIdOf(e);
    if (id === null) return null;
    const before = e.type === 'TaskCreated' ? null : get(id);
    const after = applyTaskEvent(before, e, entity);
    if (!after || after === before) return after;
    const delta = Number(isPending(after)) - Number(isPending(before));
    pending += delta;
    if (delta < 0) finished++;
    insert.run({
      id, seq: before ? 0 : ++seq, owner: after.owner, resource_type: after.resource_type, resource_id: after.resource_id,
      state: after.state, action: after.action, created_at: after.created_at, task: JSON.stringify(after),
    });
    return after;
  }

  function list(f: TaskFilters, limit: number, cursor: string | null): Page<TaskRecord> {
    const where: string[] = ['1 = 1'];
    const args: unknown[] = [];
    const add = (sql: string, v: unknown): void => {
      where.push(sql);
      args.push(v);
    };
    if (f.owner !== undefined) add('owner = ?', f.owner);
    if (f.resource_id !== undefined) add('resource_id = ?', f.resource_id);
    if (f.resource_type !== undefined) add('resource_type = ?', f.resource_type);
    if (f.state !== undefined) add('state = ?', f.state);
    if (f.action !== undefined) add('action = ?', f.action);
    if (f.since !== undefined) add('created_at >= ?', f.since);
    if (cursor) add('seq < ?', Number(decodeCursor(cursor)));
    const rows = db.prepare(`SELECT seq, task FROM rm_tasks WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT ?`).all(...args, limit + 1) as { seq: number; task: string }[];
    const items = rows.slice(0, limit);
    return {
      items: items.map((r) => JSON.parse(r.task) as TaskRecord),
      next_cursor: rows.length > limit ? encodeCursor(String(items[items.length - 1]!.seq)) : null,
    };
  }

  const pendingCallbacks = db.prepare(`SELECT task FROM rm_tasks WHERE state IN ('succeeded','failed','cancelled') AND json_extract(task, '$.callback.state') = 'pending'`);

  return {
    get,
    apply,
    list,
    /** Terminal tasks whose callback still has to be delivered (for re-arming after a restart). */
    withPendingCallbacks: (): TaskRecord[] => (pendingCallbacks.all() as { task: string }[]).map((r) => JSON.parse(r.task) as TaskRecord),
    /** Queued + running tasks, kept up to date by apply (no query). */
    pendingCount: (): number => pending,
    /** Tasks that became terminal since this process started. */
    finishedCount: (): number => finished,
    resetSeq: (): void => {
      seq = (maxSeq.get() as { m: number }).m;
      pending = (countActive.get() as { n: number }).n;
    },
  };
}

export type TasksReadModel = ReturnType<typeof createTasksReadModel>;
