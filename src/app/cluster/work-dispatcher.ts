/**
 * The owner side of the work plane in NATS mode: the effects a partition owner derives from the
 * log for the entities it owns, and nobody else does.
 *
 * - Work orders: a node whose operation has a current step (`orderOf`) is published to
 *   IRONCLAD_WORK with Nats-Msg-Id = its step id (minted with, and unique to, the event that started
 *   the step: StepStarted / PowerActionStarted), so a re-publish (after a retry, a restart or a
 *   partition take-over) is stored once; any process's consumer (./work-consumer.ts) runs it.
 *   A stack's pending resource actions (`pendingWorkOrders`) likewise, with Nats-Msg-Id = the
 *   action id of their ResourceActionStarted.
 * - Deadlines and callbacks are armed only for owned entities; a lost partition's timers are
 *   dropped at once, an acquired partition's running steps are re-published and its deadlines
 *   and pending callbacks re-armed from the read models.
 * Everything here is derived from the read models, so it is idempotent: calling it twice for the
 * same state publishes or arms nothing twice.
 */
import type { NodeState } from '../../domain/node/state.js';
import type { StackState } from '../../domain/stack/state.js';
import { pendingWorkOrders, type StackWorkOrder } from '../../domain/stack/work.js';
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

/** A stack's resource action on the wire. */
export interface StackWorkMessage {
  entity_type: 'stack';
  stack: { id: string; owner: string; name: string };
  order: StackWorkOrder;
  position: string | null;
}

export type WorkMessage = NodeWorkMessage | StackWorkMessage;

type Entity = { kind: 'node'; state: NodeState } | { kind: 'stack'; state: StackState };

export interface WorkDispatcherDeps {
  bus: Pick<Bus, 'publishWork'>;
  ownership: Ownership;
  clock: Clock;
  log: Logger;
  /** Nodes with a current step / a deadline, and terminal tasks with a pending callback (read models). */
  runningNodes(): NodeState[];
  /** Stacks with pending resource actions; omitted: stack orders are not this dispatcher's. */
  runningStacks?(): StackState[];
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

export function stackWorkMessagesOf(s: StackState): StackWorkMessage[] {
  if (!s.exists) return [];
  const stack = { id: s.id, owner: s.owner, name: s.name ?? s.id };
  return pendingWorkOrders(s).map((order) => ({ entity_type: 'stack', stack, order, position: s.position }));
}

function messagesOf(e: Entity): { msgId: string; key: string; message: WorkMessage }[] {
  if (e.kind === 'stack') return stackWorkMessagesOf(e.state).map((m) => ({ msgId: m.order.action_id, key: e.state.id, message: m }));
  const m = workMessageOf(e.state);
  return m ? [{ msgId: m.step_id, key: m.node_id, message: m }] : [];
}

export function createWorkDispatcher(deps: WorkDispatcherDeps) {
  const { ownership, log } = deps;
  const baseRetryMs = deps.retryMs ?? 500;
  /** Message ids (step / action ids) whose publish the broker confirmed (this process; bounded). */
  const published = new Set<string>();
  /** Entity (`node:<id>`, `stack:<id>`) → its newest state, waiting for a retry after a failed publish. */
  const pending = new Map<string, { entity: Entity; cancel: (() => void) | null }>();
  const failures = new Map<string, number>();
  const inFlight = new Set<string>();
  let stopped = false;
  let publishedCount = 0;

  const owns = (id: string): boolean => ownership.ownsEntity(id);

  function remember(msgId: string): void {
    published.add(msgId);
    if (published.size > PUBLISHED_MAX) published.delete(published.values().next().value!);
  }

  /** Publishes the entity's current orders unless this process already did (or it is not ours). */
  function dispatch(e: Entity): void {
    const key = `${e.kind}:${e.state.id}`;
    const waiting = pending.get(key);
    if (waiting) {
      waiting.entity = e; // a retry is armed: it publishes from the newest state
      return;
    }
    if (stopped || !owns(e.state.id)) return;
    for (const m of messagesOf(e)) {
      if (!published.has(m.msgId) && !inFlight.has(m.msgId)) void publish(key, e, m);
    }
  }

  async function publish(key: string, e: Entity, m: { msgId: string; key: string; message: WorkMessage }): Promise<void> {
    inFlight.add(m.msgId);
    try {
      const ack = await deps.bus.publishWork(m.message as unknown as Record<string, unknown>, { msgId: m.msgId, key: m.key });
      remember(m.msgId);
      failures.delete(key);
      publishedCount++;
      log.debug({ entity: key, msg_id: m.msgId, sequence: ack.sequence, duplicate: ack.duplicate }, 'work order published');
    } catch (err) {
      if (stopped) return;
      const attempt = (failures.get(key) ?? 0) + 1;
      failures.set(key, attempt);
      const delay = Math.min(baseRetryMs * 2 ** (attempt - 1), 30_000);
      log.warn({ err, entity: key, msg_id: m.msgId, attempt, retry_in_ms: delay }, 'work order publish failed; retrying');
      if (pending.has(key)) return; // one retry per entity: it publishes every order of its newest state
      const entry: { entity: Entity; cancel: (() => void) | null } = { entity: e, cancel: null };
      pending.set(key, entry);
      entry.cancel = deps.clock.setTimeout(() => {
        if (pending.get(key) !== entry) return;
        pending.delete(key);
        dispatch(entry.entity);
      }, delay);
    } finally {
      inFlight.delete(m.msgId);
    }
  }

  /** After each projected batch: owned entities get their effects, the others have none armed here. */
  function onBatch(batch: Pick<ProjectedBatch, 'nodes' | 'tasks'> & Partial<Pick<ProjectedBatch, 'stacks'>>): void {
    if (deps.runningStacks) for (const s of batch.stacks?.values() ?? []) dispatch({ kind: 'stack', state: s });
    for (const s of batch.nodes.values()) {
      if (owns(s.id)) {
        dispatch({ kind: 'node', state: s });
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
    const entities: Entity[] = [
      ...deps.runningNodes().map((state): Entity => ({ kind: 'node', state })),
      ...(deps.runningStacks?.() ?? []).map((state): Entity => ({ kind: 'stack', state })),
    ];
    for (const e of entities) {
      if (!mine(e.state.id)) continue;
      for (const m of messagesOf(e)) published.delete(m.msgId); // re-publish: a duplicate within the window is dropped by the broker
      dispatch(e);
    }
    for (const s of deps.nodesWithDeadlines()) if (mine(s.id) && owns(s.id)) deps.deadlines.reconcile(s);
    for (const t of deps.tasksWithPendingCallbacks()) if (mine(t.resource_id) && owns(t.resource_id)) deps.callbacks.reconcile(t);
  }

  /** Drops the timers of `partitions` (their new owner arms them). */
  function releasePartitions(partitions: readonly number[]): void {
    const lost = inPartitions(new Set(partitions));
    for (const s of deps.nodesWithDeadlines()) if (lost(s.id)) deps.deadlines.forget(s.id);
    for (const t of deps.tasksWithPendingCallbacks()) if (lost(t.resource_id)) deps.callbacks.forget(t.id);
    for (const [key, p] of pending) {
      if (!lost(p.entity.state.id)) continue;
      p.cancel?.();
      pending.delete(key);
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
