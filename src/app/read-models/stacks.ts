/**
 * The stacks read model: one row per stack with the folded state (the same fold as the actor's,
 * `evolveStack`) and indexed columns for the filters and for the services that follow the log
 * (stack conductor: stacks with work orders; deadlines: stacks with a running traversal).
 */
import type Database from 'better-sqlite3';
import { evolveStack, initialStackState, type StackState } from '../../domain/stack/state.js';
import { pendingDeadline, pendingWorkOrders } from '../../domain/stack/work.js';
import type { StoredEvent } from '../../ports/event-store.js';
import { decodeCursor, encodeCursor, type Page } from './nodes.js';

export interface StackFilters {
  owner?: string;
  name?: string;
  status?: string;
  /** Include DELETE_COMPLETE stacks (default: only when filtering by that status). */
  include_deleted?: boolean;
}

export function createStacksReadModel(db: Database.Database) {
  const getStmt = db.prepare('SELECT state FROM rm_stacks WHERE id = ?');
  const byName = db.prepare('SELECT state FROM rm_stacks WHERE name = ? ORDER BY deleted, created_at DESC, id');
  const upsert = db.prepare(`INSERT INTO rm_stacks (id, name, owner, status, deleted, has_work, deadline_at, created_at, state, position)
    VALUES (@id, @name, @owner, @status, @deleted, @has_work, @deadline_at, @created_at, @state, @position)
    ON CONFLICT(id) DO UPDATE SET name=excluded.name, owner=excluded.owner, status=excluded.status, deleted=excluded.deleted,
      has_work=excluded.has_work, deadline_at=excluded.deadline_at, created_at=excluded.created_at, state=excluded.state, position=excluded.position`);
  const withWork = db.prepare('SELECT state FROM rm_stacks WHERE has_work = 1');
  const withDeadlines = db.prepare('SELECT state FROM rm_stacks WHERE deadline_at IS NOT NULL');
  const cache = new Map<string, StackState>();
  const CACHE_MAX = 5_000;

  function get(id: string): StackState | null {
    const hit = cache.get(id);
    if (hit) return hit;
    const row = getStmt.get(id) as { state: string } | undefined;
    return row ? (JSON.parse(row.state) as StackState) : null;
  }

  /**
   * Folds one event into the cached state; `write` stores each changed stack once per batch.
   * `handed`: the actor's state after this event, used when the state here is at the revision before.
   */
  function fold(e: StoredEvent, id: string, handed?: StackState): StackState {
    const prev = get(id) ?? initialStackState(id);
    const next = handed !== undefined && handed.revision === e.revision && prev.revision === e.revision - 1 ? handed : evolveStack(prev, e);
    cache.delete(id);
    cache.set(id, next);
    if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
    return next;
  }

  function write(s: StackState): void {
    upsert.run({
      id: s.id, name: s.name, owner: s.owner, status: s.status, deleted: s.deleted ? 1 : 0,
      has_work: pendingWorkOrders(s).length > 0 ? 1 : 0, deadline_at: pendingDeadline(s)?.deadline_at ?? null,
      created_at: s.created_at, state: JSON.stringify(s), position: s.position,
    });
  }

  function list(f: StackFilters, limit: number, cursor: string | null): Page<StackState> {
    const where: string[] = [];
    const args: unknown[] = [];
    const add = (sql: string, v: unknown): void => {
      where.push(sql);
      args.push(v);
    };
    if (f.owner !== undefined) add('owner = ?', f.owner);
    if (f.name !== undefined) add('name = ?', f.name);
    if (f.status !== undefined) add('status = ?', f.status);
    if (!f.include_deleted && f.status === undefined) where.push('deleted = 0');
    if (cursor) add('id > ?', decodeCursor(cursor));
    const sql = `SELECT state FROM rm_stacks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`;
    const rows = db.prepare(sql).all(...args, limit + 1) as { state: string }[];
    const items = rows.slice(0, limit).map((r) => JSON.parse(r.state) as StackState);
    return { items, next_cursor: rows.length > limit ? encodeCursor(items[items.length - 1]!.id) : null };
  }

  const parse = (rows: unknown[]): StackState[] => (rows as { state: string }[]).map((r) => JSON.parse(r.state) as StackState);

  return {
    get,
    fold,
    write,
    list,
    /** Stacks named `name`, live ones first, then the newest (a deleted stack's name can be reused). */
    getByName: (name: string): StackState[] => parse(byName.all(name)),
    /** Stacks with work orders whose worker has not reported (for re-dispatch at start). */
    withPendingWork: (): StackState[] => parse(withWork.all()),
    /** Stacks whose running traversal has a deadline to arm. */
    withDeadlines: (): StackState[] => parse(withDeadlines.all()),
    clearCache: (): void => cache.clear(),
  };
}

export type StacksReadModel = ReturnType<typeof createStacksReadModel>;
