/**
 * Correctness under load, read straight from the server's SQLite file (a second, read-only
 * connection; WAL lets it read while the server writes): what was accepted was appended and
 * projected, and every stream's revisions follow its log order with no gap.
 */
import Database from 'better-sqlite3';

export interface RunCounts {
  /** TaskCreated + TaskCoalesced events carrying the run's request ids: one per accepted command. */
  appended_commands: number;
  created: number;
  coalesced: number;
  /** Tasks of those commands present in the tasks read model. */
  projected_tasks: number;
  /** ... of which not yet terminal. */
  unfinished_tasks: number;
}

export interface Integrity {
  events: number;
  streams: number;
  head: number;
  checkpoint: number;
  /** Adjacent events of a stream (in log order) whose revisions do not step by exactly 1. */
  ordering_violations: number;
  /** Streams whose first revision is not 0. */
  bad_starts: number;
  /** Node rows whose position is not their stream's last event. */
  read_model_behind: number;
}

export function openReadOnly(path: string): Database.Database {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 10000');
  return db;
}

export const head = (db: Database.Database): number =>
  (db.prepare('SELECT coalesce(max(position), 0) AS p FROM events').get() as { p: number }).p;

export const checkpoint = (db: Database.Database): number =>
  Number((db.prepare("SELECT position FROM rm_checkpoints WHERE name = 'read-models'").get() as { position: string } | undefined)?.position ?? 0);

export function runCounts(db: Database.Database, afterPosition: number, tag: string): RunCounts {
  const like = `${tag}-%`;
  const byType = db.prepare(`SELECT type, count(*) AS n FROM events WHERE position > ? AND type IN ('TaskCreated', 'TaskCoalesced')
    AND json_extract(metadata, '$.request_id') LIKE ? GROUP BY type`).all(afterPosition, like) as { type: string; n: number }[];
  const n = (t: string): number => byType.find((r) => r.type === t)?.n ?? 0;
  const tasks = db.prepare(`SELECT count(*) AS n, sum(t.state IN ('queued', 'running')) AS open FROM rm_tasks t WHERE t.id IN (
    SELECT json_extract(data, '$.task_id') FROM events WHERE position > ? AND type = 'TaskCreated' AND json_extract(metadata, '$.request_id') LIKE ?)`)
    .get(afterPosition, like) as { n: number; open: number | null };
  return { appended_commands: n('TaskCreated') + n('TaskCoalesced'), created: n('TaskCreated'), coalesced: n('TaskCoalesced'), projected_tasks: tasks.n, unfinished_tasks: tasks.open ?? 0 };
}

/** Waits (bounded) until the read models reached the head and the run's tasks are all terminal. */
export async function settle(db: Database.Database, afterPosition: number, tag: string, timeoutMs = 120_000): Promise<RunCounts> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const c = runCounts(db, afterPosition, tag);
    if ((checkpoint(db) >= head(db) && c.unfinished_tasks === 0 && c.projected_tasks === c.created) || Date.now() > until) return c;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function integrity(db: Database.Database): Integrity {
  const ordering = db.prepare(`SELECT count(*) AS n FROM (
      SELECT revision - LAG(revision) OVER (PARTITION BY stream ORDER BY position) AS d FROM events
    ) WHERE d IS NOT NULL AND d <> 1`).get() as { n: number };
  const starts = db.prepare('SELECT count(*) AS n FROM (SELECT stream, min(revision) AS r FROM events GROUP BY stream) WHERE r <> 0').get() as { n: number };
  const behind = db.prepare(`SELECT count(*) AS n FROM rm_nodes r JOIN (SELECT stream, max(position) AS p FROM events GROUP BY stream) e
    ON e.stream = 'node-' || r.id WHERE CAST(r.position AS INTEGER) <> e.p`).get() as { n: number };
  const totals = db.prepare('SELECT count(*) AS n, count(DISTINCT stream) AS s FROM events').get() as { n: number; s: number };
  return {
    events: totals.n, streams: totals.s, head: head(db), checkpoint: checkpoint(db),
    ordering_violations: ordering.n, bad_starts: starts.n, read_model_behind: behind.n,
  };
}
