/** The nodes read model: one row per node with the folded state and indexed filter columns. */
import type Database from 'better-sqlite3';
import { evolveNode, initialNodeState, type NodeState } from '../../domain/node/state.js';
import type { StoredEvent } from '../../ports/event-store.js';

export interface NodeFilters {
  owner?: string;
  provision_state?: string;
  resource_class?: string;
  maintenance?: boolean;
  name?: string;
  has_pending?: boolean;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

const encodeCursor = (v: string): string => Buffer.from(v, 'utf8').toString('base64url');
const decodeCursor = (c: string): string => Buffer.from(c, 'base64url').toString('utf8');
export { encodeCursor, decodeCursor };

export function createNodesReadModel(db: Database.Database) {
  const getStmt = db.prepare('SELECT state FROM rm_nodes WHERE id = ?');
  const byName = db.prepare('SELECT state FROM rm_nodes WHERE name = ? AND deleted = 0 ORDER BY owner');
  const upsert = db.prepare(`INSERT INTO rm_nodes (id, name, owner, provision_state, resource_class, maintenance, has_pending, deleted, step_id, deadline_at, state, position)
    VALUES (@id, @name, @owner, @provision_state, @resource_class, @maintenance, @has_pending, @deleted, @step_id, @deadline_at, @state, @position)
    ON CONFLICT(id) DO UPDATE SET name=excluded.name, owner=excluded.owner, provision_state=excluded.provision_state,
      resource_class=excluded.resource_class, maintenance=excluded.maintenance, has_pending=excluded.has_pending,
      deleted=excluded.deleted, step_id=excluded.step_id, deadline_at=excluded.deadline_at, state=excluded.state, position=excluded.position`);
  // The volatile columns only: the name and candidates indexes are left alone when their columns did not change.
  const update = db.prepare('UPDATE rm_nodes SET has_pending = ?, step_id = ?, deadline_at = ?, state = ?, position = ? WHERE id = ?');
  const withSteps = db.prepare('SELECT state FROM rm_nodes WHERE step_id IS NOT NULL AND deleted = 0');
  const withDeadlines = db.prepare('SELECT state FROM rm_nodes WHERE deadline_at IS NOT NULL AND deleted = 0');
  const allLive = db.prepare('SELECT state FROM rm_nodes WHERE deleted = 0 ORDER BY id');
  const countPending = db.prepare('SELECT count(*) AS n FROM rm_nodes WHERE has_pending = 1');
  const claimWrite = createClaimRows(db);
  const candidatesStmt = db.prepare(CANDIDATES_SQL);
  const claimsOfStackStmt = db.prepare('SELECT n.state FROM rm_node_claims c JOIN rm_nodes n ON n.id = c.node_id WHERE c.stack_id = ? ORDER BY n.name, n.id');
  /** Nodes whose allocation changed in the batch being folded (their claim row is rewritten by `write`). */
  const claimsDirty = new Set<string>();
  const cache = new Map<string, NodeState>();
  const CACHE_MAX = 20_000;
  /** The state each node's row was last written from, by this process (a rolled-back batch clears it: clearCache). */
  const written = new Map<string, NodeState>();

  function get(id: string): NodeState | null {
    const hit = cache.get(id);
    if (hit) return hit;
    const row = getStmt.get(id) as { state: string } | undefined;
    return row ? (JSON.parse(row.state) as NodeState) : null;
  }

  /**
   * Folds one event into the cached state without writing the row: the projector folds a whole
   * batch, then writes each changed node once (`write`), not once per event. `handed` is the
   * actor's state after this event (folded-states.ts): taken as it is when the state here is at
   * the revision just before, folded otherwise. `prev` saves a lookup when the caller has it.
   */
  function fold(e: StoredEvent, entityId: string, handed?: NodeState, prev: NodeState | null = get(entityId)): NodeState {
    prev ??= initialNodeState(entityId);
    const next = handed !== undefined && handed.revision === e.revision && prev.revision === e.revision - 1 ? handed : evolveNode(prev, e);
    if (next.allocation !== prev.allocation) claimsDirty.add(entityId);
    cache.delete(entityId);
    cache.set(entityId, next);
    if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
    return next;
  }

  /**
   * Writes a node's row from its state (inside the projector's transaction). When the row was
   * written from a state with the same name, owner, class, provision state, maintenance and
   * deleted flag, only the volatile columns are updated (a power command changes none of those).
   */
  function write(next: NodeState): void {
    const was = written.get(next.id);
    const hasPending = next.op || next.queue.length > 0 ? 1 : 0;
    const state = JSON.stringify(next);
    const same = was !== undefined && was.name === next.name && was.owner === next.owner && was.resource_class === next.resource_class &&
      was.provision_state === next.provision_state && was.maintenance === next.maintenance && was.deleted === next.deleted;
    if (!same || update.run(hasPending, next.op?.step_id ?? null, next.op?.deadline_at ?? null, state, next.position, next.id).changes !== 1) {
      upsert.run({
        id: next.id, name: next.name, owner: next.owner, provision_state: next.provision_state,
        resource_class: next.resource_class, maintenance: next.maintenance ? 1 : 0,
        has_pending: hasPending, deleted: next.deleted ? 1 : 0,
        step_id: next.op?.step_id ?? null, deadline_at: next.op?.deadline_at ?? null,
        state, position: next.position,
      });
    }
    written.delete(next.id);
    written.set(next.id, next);
    if (written.size > CACHE_MAX) written.delete(written.keys().next().value!);
    if (claimsDirty.delete(next.id)) claimWrite(next);
  }

  /** Folds one event and writes the row (inside the projector's transaction). Returns the new state. */
  function apply(e: StoredEvent, entityId: string): NodeState {
    const next = fold(e, entityId);
    write(next);
    return next;
  }

  function list(f: NodeFilters, limit: number, cursor: string | null): Page<NodeState> {
    const where: string[] = ['deleted = 0'];
    const args: unknown[] = [];
    const add = (sql: string, v: unknown): void => {
      where.push(sql);
      args.push(v);
    };
    if (f.owner !== undefined) add('owner = ?', f.owner);
    if (f.provision_state !== undefined) add('provision_state = ?', f.provision_state);
    if (f.resource_class !== undefined) add('resource_class = ?', f.resource_class);
    if (f.maintenance !== undefined) add('maintenance = ?', f.maintenance ? 1 : 0);
    if (f.name !== undefined) add('name = ?', f.name);
    if (f.has_pending !== undefined) add('has_pending = ?', f.has_pending ? 1 : 0);
    if (cursor) add('id > ?', decodeCursor(cursor));
    const rows = db.prepare(`SELECT state FROM rm_nodes WHERE ${where.join(' AND ')} ORDER BY id LIMIT ?`).all(...args, limit + 1) as { state: string }[];
    const items = rows.slice(0, limit).map((r) => JSON.parse(r.state) as NodeState);
    return { items, next_cursor: rows.length > limit ? encodeCursor(items[items.length - 1]!.id) : null };
  }

  const parse = (rows: unknown[]): NodeState[] => (rows as { state: string }[]).map((r) => JSON.parse(r.state) as NodeState);

  return {
    get,
    fold,
    write,
    /** Nodes named `name` (names are unique per owner). */
    getByName: (name: string): NodeState[] => (byName.all(name) as { state: string }[]).map((r) => JSON.parse(r.state) as NodeState),
    apply,
    list,
    withRunningSteps: (): NodeState[] => parse(withSteps.all()),
    withDeadlines: (): NodeState[] => parse(withDeadlines.all()),
    allLive: (): NodeState[] => parse(allLive.all()),
    pendingCount: (): number => (countPending.get() as { n: number }).n,
    /**
     * The scheduler's candidates (api.md "Scheduler"): live nodes of `owner` with `resource_class`,
     * every trait of `traits`, `available`, not in maintenance and unclaimed, in name order (then id),
     * skipping `exclude`. Indexed (rm_nodes_candidates): it reads rows in order and stops at `limit`.
     * Read-model data may lag: the node actor has the last word when the claim is made.
     */
    candidates: (q: CandidateQuery): NodeState[] =>
      parse(candidatesStmt.all({
        owner: q.owner, resource_class: q.resource_class, traits: JSON.stringify(q.traits ?? []),
        exclude: JSON.stringify(q.exclude ?? []), limit: q.limit,
      })),
    /** Nodes claimed by resources of `stackId` (any of its claims), in name order. */
    claimedBy: (stackId: string): NodeState[] => parse(claimsOfStackStmt.all(stackId)),
    /** Forgets every folded and written state (a rebuild, or a batch whose transaction rolled back). */
    clearCache: (): void => {
      cache.clear();
      written.clear();
      claimsDirty.clear();
    },
  };
}

export type NodesReadModel = ReturnType<typeof createNodesReadModel>;

export interface CandidateQuery {
  owner: string;
  resource_class: string;
  traits?: readonly string[];
  exclude?: readonly string[];
  limit: number;
}

// The partial index's WHERE terms appear verbatim so SQLite can use it and walk it in name order.
export const CANDIDATES_SQL = `SELECT n.state FROM rm_nodes n
  WHERE n.owner = @owner AND n.resource_class = @resource_class
    AND n.provision_state = 'available' AND n.maintenance = 0 AND n.deleted = 0
    AND NOT EXISTS (SELECT 1 FROM rm_node_claims c WHERE c.node_id = n.id)
    AND n.id NOT IN (SELECT value FROM json_each(@exclude))
    AND NOT EXISTS (SELECT 1 FROM json_each(@traits) r WHERE r.value NOT IN (SELECT t.value FROM json_each(n.state, '$.traits') t))
  ORDER BY n.name, n.id LIMIT @limit`;

/** Keeps a node's row in rm_node_claims equal to its allocation (written only when it changed). */
function createClaimRows(db: Database.Database): (s: NodeState) => void {
  const del = db.prepare('DELETE FROM rm_node_claims WHERE node_id = ?');
  const ins = db.prepare('INSERT INTO rm_node_claims (node_id, stack_id, resource_name, claim_id) VALUES (?, ?, ?, ?)');
  return (s) => {
    del.run(s.id);
    if (s.allocation && !s.deleted) ins.run(s.id, s.allocation.stack_id, s.allocation.resource_name, s.allocation.claim_id);
  };
}
