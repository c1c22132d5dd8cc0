/**
 * The owner side of the work plane in NATS mode: the effects a partition owner derives from the
 * log for the entities it owns, and nobody else does.
 *
 * - Work orders: a node whose operation has a current step (`orderOf`) is published to
 *   IRONCLAD_WORK with Nats-Msg-Id = its step id (minted with, and unique to, the event that started
 *   the step: StepStarted / PowerActionStarted), so a re-publish (after a retry, a restart or a
 *   partition take-over) is stored once; any process's consumer (./work-consumer.ts) runs it.
 * - Deadlines and callbacks are armed only for owned entities; a lost partition's timers are
 *   dropped at once, an acquired partition's running steps are re-published and its deadlines
 *   and pending callbacks re-armed from the read models.
 * Everything here is derived from the read models, so it is idempotent: calling it twice for the
 * same state publishes or arms nothing twice.
 */
import type { NodeState } from '../../domain/node/state.js';
import type { TaskRecord } from '../../domain/tasks.js';
import type { Bus } from '../../ports/bus.js';
import type { Clock } from '../../ports/clock.js';
import type { Logger } from '../../ports/logger.js';
import type { ProjectedBatch } from '../projector.js';
import { orderOf, type WorkOrder } from '../work/conductor.js';
import { partitionOfEntity, type Ownership } from './ownership.js';

/** What goes on the wire: the order, and the log position of the state it was derived from. */
export interface NodeWorkMessage extends WorkOrder {
  entity_type: 'node';
  /** The consumer waits for its read models to reach this position before judging the order current. */
  position: string | null;
}

export interface WorkDispatcherDeps {
  bus: Pick<Bus, 'publishWork'>;
  ownership: Ownership;
  clock: Clock;
  log: Logger;
  /** Nodes with a current step / a deadline, and terminal tasks with a pending callback (read models). */
  runningNodes(): NodeState[];
  nodesWithDeadlines(): NodeState[];
  tasksWithPendingCallbacks(): TaskRecord[];
  deadlines: { reconcile(s: NodeState): void; forget(nodeId: string): void };
  callbacks: { reconcile(t: TaskRecord): void; forget(taskId: string): void };
  /** Delay before a failed publish is tried again (doubling, at most 30 s). Default 500 ms. */
  retryMs?: number;
}

const PUBLISHED_MAX = 200_000;

export function workMessageOf(s: NodeState): NodeWorkMessage | null {
  const order = orderOf(s);
  return order ? { ...order, entity_type: 'node', position: s.position } : null;
}

export function createWorkDispatcher(deps: WorkDispatcherDeps) {
  const { ownership, log } = deps;
  const baseRetryMs = deps.retryMs ?? 500;
  /** Step ids whose publish the broker confirmed (this process; bounded). */
  const published = new Set<string>();
  /** Node id → the newest state waiting for a (re)publish, with its retry timer. */
  const pending = new Map<string, { state: NodeState; cancel: (() => void) | null }>();
  const inFlight = new Set<string>();
  let stopped = false;
  let publishedCount = 0;

  const owns = (id: string): boolean => ownership.ownsEntity(id);

  function remember(stepId: string): void {
    published.add(stepId);
    if (published.size > PUBLISHED_MAX) published.delete(published.values().next().value!);
  }

  /** Publishes the node's current step unless this process already did (or it is not ours). */
  function dispatch(s: NodeState): void {
    const waiting = pending.get(s.id);
    if (waiting) {
      waiting.state = s; // a retry is armed: it publishes the newest state
      return;
    }
    const msg = workMessageOf(s);
    if (!msg || stopped || !owns(s.id) || published.has(msg.step_id) || inFlight.has(msg.step_id)) return;
    void publish(s, msg, 1);
  }

  async function publish(s: NodeState, msg: NodeWorkMessage, attempt: number): Promise<void> {
    inFlight.add(msg.step_id);
    try {
      const ack = await deps.bus.publishWork(msg as unknown as Record<string, unknown>, { msgId: msg.step_id, key: msg.node_id });
      remember(msg.step_id);
      publishedCount++;
      log.debug({ node_id: msg.node_id, step_id: msg.step_id, sequence: ack.sequence, duplicate: ack.duplicate }, 'work order published');
    } catch (err) {
      if (stopped) return;
      const delay = Math.min(baseRetryMs * 2 ** (attempt - 1), 30_000);
      log.warn({ err, node_id: msg.node_id, step_id: msg.step_id, attempt, retry_in_ms: delay }, 'work order publish failed; retrying');
      const entry: { state: NodeState; cancel: (() => void) | null } = { state: s, cancel: null };
      pending.set(s.id, entry);
      entry.cancel = deps.clock.setTimeout(() => {
        if (pending.get(s.id) !== entry) return;
        pending.delete(s.id);
        const next = workMessageOf(entry.state);
        if (!next || stopped || !owns(s.id) || published.has(next.step_id) || inFlight.has(next.step_id)) return;
        void publish(entry.state, next, next.step_id === msg.step_id ? attempt + 1 : 1);
      }, delay);
    } finally {
      inFlight.delete(msg.step_id);
    }
  }

  /** After each projected batch: owned entities get their effects, the others have none armed here. */
  function onBatch(batch: Pick<ProjectedBatch, 'nodes' | 'tasks'>): void {
    for (const s of batch.nodes.values()) {
      if (owns(s.id)) {
        dispatch(s);
        deps.deadlines.reconcile(s);
      } else {
        deps.deadlines.forget(s.id);
      }
    }
    for (const t of batch.tasks.values()) {
      if (owns(t.resource_id)) deps.callbacks.reconcile(t);
      else deps.callbacks.forget(t.id);
    }
  }

  const inPartitions = (parts: ReadonlySet<number>) => (id: string): boolean => parts.has(partitionOfEntity(ownership, id));

  /** Arms everything of `partitions` (all owned ones when omitted) from the read models. */
  function armOwned(partitions?: readonly number[]): void {
    if (stopped) return;
    const mine = partitions ? inPartitions(new Set(partitions)) : owns;
    for (const s of deps.runningNodes()) {
      if (!mine(s.id)) continue;
      const msg = workMessageOf(s);
      if (msg) published.delete(msg.step_id); // re-publish: a duplicate within the window is dropped by the broker
      dispatch(s);
    }
    for (const s of deps.nodesWithDeadlines()) if (mine(s.id) && owns(s.id)) deps.deadlines.reconcile(s);
    for (const t of deps.tasksWithPendingCallbacks()) if (mine(t.resource_id) && owns(t.resource_id)) deps.callbacks.reconcile(t);
  }

  /** Drops the timers of `partitions` (their new owner arms them). */
  function releasePartitions(partitions: readonly number[]): void {
    const lost = inPartitions(new Set(partitions));
    for (const s of deps.nodesWithDeadlines()) if (lost(s.id)) deps.deadlines.forget(s.id);
    for (const t of deps.tasksWithPendingCallbacks()) if (lost(t.resource_id)) deps.callbacks.forget(t.id);
    for (const [id, p] of pending) {
      if (!lost(id)) continue;
      p.cancel?.();
      pending.delete(id);
    }
  }

  let unsubscribe: (() => void) | null = null;

  return {
    onBatch,
    /** Arms every owned entity's effects and follows ownership changes from now on. */
    start(): void {
      stopped = false;
      unsubscribe ??= ownership.onChange((acquired, lost) => {
        if (lost.length > 0) releasePartitions(lost);
        if (acquired.length > 0) {
          log.info({ partitions: acquired }, 'partitions acquired: re-publishing their running steps, re-arming deadlines and callbacks');
          armOwned(acquired);
        }
      });
      armOwned();
    },
    stats: () => ({ published: publishedCount, retrying: pending.size }),
    stop(): void {
      stopped = true;
      unsubscribe?.();
      unsubscribe = null;
      for (const p of pending.values()) p.cancel?.();
      pending.clear();
    },
  };
}

export type WorkDispatcher = ReturnType<typeof createWorkDispatcher>;
