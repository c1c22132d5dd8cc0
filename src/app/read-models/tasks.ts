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

/** Tasks changed within one projector batch: the newest record and its seq (0 = row exists). */
export type TaskBatch = Map<string, { task: TaskRecord; seq: number }>;

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

  /**
   * Folds an event into the task it names, keeping the result in `batch` (tasks changed earlier in
   * the same projector batch, not written yet) instead of writing it: `writeBatch` then writes
   * each changed task once. Returns the updated task (or null if none). `active`: the entity's
   * active tasks before this event (a node state's `tasks`, the same fold of the same events), so
   * a task still running is not read back from its row.
   */
  function fold(
    e: StoredEvent, entity: { resource_type: 'node' | 'stack'; resource_id: string; owner: string }, batch: TaskBatch,
    active?: Record<string, TaskRecord>,
  ): TaskRecord | null {
    const id = taskIdOf(e);
    if (id === null) return null;
    const held = batch.get(id);
    const before = held ? held.task : e.type === 'TaskCreated' ? null : (active?.[id] ?? get(id));
    const after = applyTaskEvent(before, e, entity);
    if (!after || after === before) return after;
    const delta = Number(isPending(after)) - Number(isPending(before));
    pending += delta;
    if (delta < 0) finished++;
    batch.set(id, { task: after, seq: held ? held.seq : before ? 0 : ++seq });
    return after;
  }

  function writeBatch(batch: TaskBatch): void {
    for (const [id, { task, seq: s }] of batch) {
      insert.run({
        id, seq: s, owner: task.owner, resource_type: task.resource_type, resource_id: task.resource_id,
        state: task.state, action: task.action, created_at: task.created_at, task: JSON.stringify(task),
      });
    }
  }

  /** Applies an event to the task it names and writes it; returns the updated task (or null if none). */
  function apply(e: StoredEvent, entity: { resource_type: 'node' | 'stack'; resource_id: string; owner: string }): TaskRecord | null {
    const batch: TaskBatch = new Map();
    const after = fold(e, entity, batch);
    writeBatch(batch);
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
    fold,
    writeBatch,
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
