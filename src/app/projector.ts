/**
 * Follows the log from a stored checkpoint and keeps the read models. Each batch of events and
 * the new checkpoint commit in one SQLite transaction, so a crash never applies an event twice
 * or skips one. With no checkpoint the read models are rebuilt from the start of the log.
 * After each commit, listeners (work dispatcher, timers, long-poll, read-your-writes) are told.
 * Events this process's actors appended come with the actor's state after them (folded-states.ts):
 * the projector takes that state instead of folding the event a second time.
 */
import type Database from 'better-sqlite3';
import type { NodeState } from '../domain/node/state.js';
import type { StackState } from '../domain/stack/state.js';
import type { TaskRecord } from '../domain/tasks.js';
import { comparePositions, type EventStore, type StoredEvent, type Subscription } from '../ports/event-store.js';
import type { Logger } from '../ports/logger.js';
import { foldedAfter } from '../runtime/folded-states.js';
import { clearReadModels } from './read-models/schema.js';
import type { NodesReadModel } from './read-models/nodes.js';
import type { StacksReadModel } from './read-models/stacks.js';
import type { TaskBatch, TasksReadModel } from './read-models/tasks.js';

export interface ProjectedBatch {
  events: StoredEvent[];
  nodes: Map<string, NodeState>;
  /** Stacks changed in this batch (empty when no stacks read model is wired). */
  stacks: Map<string, StackState>;
  tasks: Map<string, TaskRecord>;
  position: string;
}

export type BatchListener = (batch: ProjectedBatch) => void;

export function entityOf(stream: string): { type: string; id: string } {
  const i = stream.indexOf('-');
  return { type: stream.slice(0, i), id: stream.slice(i + 1) };
}

const CHECKPOINT = 'read-models';
/** Events per transaction while catching up at start (the live subscription hands over at most 500). */
const CATCH_UP_PAGE = 20_000;

export function createProjector(deps: { store: EventStore; db: Database.Database; nodes: NodesReadModel; tasks: TasksReadModel; log: Logger; stacks?: StacksReadModel }) {
  const { store, db, nodes, tasks, log, stacks } = deps;
  const listeners: BatchListener[] = [];
  const waiters: { position: string; resolve: (ok: boolean) => void }[] = [];
  const readCheckpoint = db.prepare('SELECT position FROM rm_checkpoints WHERE name = ?');
  const writeCheckpoint = db.prepare('INSERT INTO rm_checkpoints (name, position) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET position = excluded.position');
  let position: string | null = (readCheckpoint.get(CHECKPOINT) as { position: string } | undefined)?.position ?? null;
  let subscription: Subscription | null = null;
  let eventsApplied = 0;

  const applyBatch = db.transaction((events: StoredEvent[]): ProjectedBatch => {
    const changedNodes = new Map<string, NodeState>();
    const changedStacks = new Map<string, StackState>();
    const changedTasks = new Map<string, TaskRecord>();
    const taskRows: TaskBatch = new Map();
    for (const e of events) {
      const entity = entityOf(e.stream);
      if (entity.type === 'node') {
        const prev = nodes.get(entity.id);
        const state = nodes.fold(e, entity.id, foldedAfter<NodeState>(e), prev);
        changedNodes.set(entity.id, state);
        const t = tasks.fold(e, { resource_type: 'node', resource_id: entity.id, owner: state.owner }, taskRows, prev?.tasks);
        if (t) changedTasks.set(t.id, t);
      } else if (entity.type === 'stack' && stacks) {
        const state = stacks.fold(e, entity.id, foldedAfter<StackState>(e));
        changedStacks.set(entity.id, state);
        const t = tasks.fold(e, { resource_type: 'stack', resource_id: entity.id, owner: state.owner }, taskRows);
        if (t) changedTasks.set(t.id, t);
      }
    }
    // One row write per changed node and task per batch (an append carries several events of one node).
    for (const state of changedNodes.values()) nodes.write(state);
    for (const state of changedStacks.values()) stacks!.write(state);
    tasks.writeBatch(taskRows);
    const last = events[events.length - 1]!.position;
    writeCheckpoint.run(CHECKPOINT, last);
    return { events, nodes: changedNodes, stacks: changedStacks, tasks: changedTasks, position: last };
  });

  function handle(events: StoredEvent[]): void {
    if (events.length === 0) return;
    let batch: ProjectedBatch;
    try {
      batch = applyBatch(events);
    } catch (err) {
      // Rolled back: the states folded (and rows written) for this batch are not in the tables.
      // Forget them, so the retry folds from the committed rows again.
      nodes.clearCache();
      stacks?.clearCache();
      tasks.resetSeq();
      throw err;
    }
    position = batch.position;
    eventsApplied += events.length;
    for (const l of listeners) {
      try {
        l(batch);
      } catch (err) {
        log.error({ err }, 'projection listener failed');
      }
    }
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (comparePositions(waiters[i]!.position, position) <= 0) {
        waiters[i]!.resolve(true);
        waiters.splice(i, 1);
      }
    }
  }

  /**
   * Start-up catch-up (a rebuild, or the log written while the process was down) in pages far
   * larger than the live subscription's: each page is one transaction in which every changed node
   * and task row is written once, however many of its events the page holds. A failure here is
   * left to the subscription that follows, which retries the same events and logs why.
   */
  async function catchUp(head: string): Promise<void> {
    try {
      while (position === null || comparePositions(position, head) < 0) {
        const page = await store.readAll({ ...(position === null ? {} : { after: position }), limit: CATCH_UP_PAGE });
        if (page.length === 0) return;
        handle(page);
        await new Promise<void>((resolve) => setImmediate(resolve)); // let timers and I/O in between pages
      }
    } catch (err) {
      log.warn({ err, position }, 'projection catch-up stopped; the subscription continues from here');
    }
  }

  return {
    /** Starts following the log; resolves once the read models reached the head seen at start. */
    async start(): Promise<void> {
      if (position === null) {
        clearReadModels(db);
        nodes.clearCache();
        stacks?.clearCache();
        tasks.resetSeq();
      }
      const head = await store.headPosition();
      if (head !== null) await catchUp(head);
      subscription = store.subscribeAll(position, handle);
      if (head !== null) await this.waitFor(head, 24 * 3600_000);
    },
    position: (): string | null => position,
    eventsApplied: (): number => eventsApplied,
    isCaughtUp(pos: string): boolean {
      return position !== null && comparePositions(pos, position) <= 0;
    },
    /** Resolves true once the read models reached `pos`, false after `timeoutMs`. */
    waitFor(pos: string, timeoutMs: number): Promise<boolean> {
      if (position !== null && comparePositions(pos, position) <= 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const w = { position: pos, resolve };
        waiters.push(w);
        const t = setTimeout(() => {
          const i = waiters.indexOf(w);
          if (i >= 0) waiters.splice(i, 1);
          resolve(false);
        }, timeoutMs);
        t.unref?.();
        const orig = w.resolve;
        w.resolve = (ok) => {
          clearTimeout(t);
          orig(ok);
        };
      });
    },
    onBatch(l: BatchListener): void {
      listeners.push(l);
    },
    async close(): Promise<void> {
      await subscription?.close();
      for (const w of waiters.splice(0)) w.resolve(false);
    },
  };
}

export type Projector = ReturnType<typeof createProjector>;
