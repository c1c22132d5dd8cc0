/**
 * The worker side of the work plane in NATS mode: every process joins the shared `workers`
 * consumer of IRONCLAD_WORK and runs the orders it is handed with the same code as the
 * in-process conductor (`runOrder`; a stack's resource action with the stack conductor's
 * `outcomeOf`), reporting each outcome as an ordinary command (routed to the entity's owner by the
 * node and stack services).
 *
 * Settlement (at-least-once, idempotent):
 * - the order is judged against this process's read models once they reached the order's
 *   position: a step that is no longer current (finished, superseded, node gone) is acked without
 *   running anything;
 * - `working()` every `heartbeatMs` while the driver runs, so a long deploy is not redelivered;
 * - ack only after the outcome command was accepted (a stale outcome is accepted and ignored by
 *   the actor). A report that fails transiently (the owner is being replaced) is retried with the
 *   outcome already in hand, so the driver does not run again; after `reportAttempts` the order is
 *   naked with backoff (run again later), and a permanent error terminates it;
 * - a process that stops naks what it was running (redelivered at once to another process); one
 *   that dies leaves it unacked (redelivered after the consumer's ack wait).
 */
import type { NodeState } from '../../domain/node/state.js';
import type { ResourceOutcomeReport } from '../../domain/stack/commands.js';
import type { StackState } from '../../domain/stack/state.js';
import { pendingWorkOrders } from '../../domain/stack/work.js';
import { settlementFor, type Bus, type BusSubscription, type WorkDelivery } from '../../ports/bus.js';
import type { Logger } from '../../ports/logger.js';
import { runOrder, type OrderRunnerDeps, type WorkOrder } from '../work/conductor.js';
import type { StackJob } from '../stacks/stack-conductor.js';
import type { NodeWorkMessage, StackWorkMessage } from './work-dispatcher.js';

export interface WorkConsumerDeps extends OrderRunnerDeps {
  bus: Pick<Bus, 'consumeWork'>;
  log: Logger;
  /** Orders run at once by this process. */
  concurrency: number;
  /** Interval of `working()` while an order runs (a third of the consumer's ack wait). */
  heartbeatMs: number;
  /**
   * The node's state as this process's read models know it once they reached `position`, or
   * null when it does not exist. Throws (transient) when the read models cannot catch up in time.
   */
  stateAt(nodeId: string, position: string | null): Promise<NodeState | null>;
  /** Stack resource actions (omitted: a stack order is terminated as unknown). */
  stacks?: {
    stateAt(stackId: string, position: string | null): Promise<StackState | null>;
    /** Runs the resource worker (`StackConductor.outcomeOf`); null when aborted. */
    outcomeOf(job: StackJob, signal: AbortSignal, heartbeat: () => void): Promise<ResourceOutcomeReport | null>;
    report(stackId: string, report: ResourceOutcomeReport): Promise<void>;
  };
  /** Attempts of one outcome report before the order is naked (transient failures). Default 8 (about 30 s of retries). */
  reportAttempts?: number;
}

export class ReadModelLagError extends Error {
  readonly kind = 'transient';
}

/** The order in a delivery, or null when it is not a node work order this version understands. */
export function nodeOrderOf(d: Pick<WorkDelivery, 'order'>): NodeWorkMessage | null {
  const o = d.order as Partial<NodeWorkMessage>;
  if (o.entity_type !== 'node' || typeof o.node_id !== 'string' || typeof o.step_id !== 'string' || typeof o.op_id !== 'string') return null;
  if ((o.kind !== 'step' && o.kind !== 'power') || typeof o.operation !== 'string' || (o.phase !== 'start' && o.phase !== 'resume')) return null;
  return o as NodeWorkMessage;
}

/** The stack order in a delivery, or null. */
export function stackOrderOf(d: Pick<WorkDelivery, 'order'>): StackWorkMessage | null {
  const o = d.order as Partial<StackWorkMessage>;
  if (o.entity_type !== 'stack' || typeof o.stack?.id !== 'string' || typeof o.order?.action_id !== 'string') return null;
  return o as StackWorkMessage;
}

/** True while the stack still waits for this action's outcome. */
export function isPendingAction(s: StackState | null, actionId: string): s is StackState {
  return s !== null && pendingWorkOrders(s).some((o) => o.action_id === actionId);
}

/** True while `s` still runs exactly this step. */
export function isCurrent(s: NodeState | null, o: WorkOrder): s is NodeState {
  return s !== null && !s.deleted && s.op !== null && s.op.op_id === o.op_id && s.op.step_id === o.step_id;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

export function createWorkConsumer(deps: WorkConsumerDeps) {
  const { log } = deps;
  const attempts = Math.max(1, deps.reportAttempts ?? 8);

  /** Calls `report` until it is accepted, a permanent error, `attempts` failures, or the abort. */
  async function reliably(report: () => Promise<void>, signal: AbortSignal, fields: Record<string, unknown>): Promise<void> {
    for (let n = 1; ; n++) {
      try {
        return await report();
      } catch (err) {
        const s = settlementFor(err, n);
        if (s.action === 'term' || n >= attempts || signal.aborted) throw err;
        const delayMs = Math.min(250 * 2 ** (n - 1), 15_000);
        log.warn({ ...fields, err, attempt: n, retry_in_ms: delayMs }, 'work order outcome not accepted yet; retrying the report');
        await pause(delayMs, signal);
        if (signal.aborted) throw err;
      }
    }
  }
  const running = new Map<number, AbortController>();
  let subscription: BusSubscription | null = null;
  let stopped = false;
  let completed = 0;
  let skipped = 0;

  /** A stack's resource action: same settlement rules as a node step. */
  async function handleStack(d: WorkDelivery, m: StackWorkMessage, stacks: NonNullable<WorkConsumerDeps['stacks']>): Promise<void> {
    const fields = { stack_id: m.stack.id, action_id: m.order.action_id, type: m.order.type, delivery: d.deliveryCount };
    const ac = new AbortController();
    running.set(d.sequence, ac);
    const heartbeat = setInterval(() => d.working(), deps.heartbeatMs);
    try {
      if (!isPendingAction(await stacks.stateAt(m.stack.id, m.position), m.order.action_id)) {
        await d.ack();
        skipped++;
        log.debug(fields, 'stack work order no longer pending; acked without running');
        return;
      }
      log.info(fields, 'work order running');
      const report = await stacks.outcomeOf({ stack: m.stack, order: m.order }, ac.signal, () => d.working());
      if (!report) {
        d.nak(0);
        return;
      }
      await reliably(() => stacks.report(m.stack.id, report), ac.signal, fields);
      await d.ack();
      completed++;
      log.info(fields, 'work order done');
    } catch (err) {
      if (ac.signal.aborted) {
        d.nak(0);
        return;
      }
      log.warn({ ...fields, err, settlement: settlementFor(err, d.deliveryCount) }, 'work order failed');
      throw err;
    } finally {
      clearInterval(heartbeat);
      running.delete(d.sequence);
    }
  }

  async function handle(d: WorkDelivery): Promise<void> {
    const stackOrder = deps.stacks ? stackOrderOf(d) : null;
    if (stackOrder) return handleStack(d, stackOrder, deps.stacks!);
    const order = nodeOrderOf(d);
    if (!order) {
      d.term('not a work order this process understands');
      log.error({ msg_id: d.msgId, sequence: d.sequence }, 'work consumer: unknown work order terminated');
      return;
    }
    const fields = { node_id: order.node_id, step_id: order.step_id, operation: order.operation, delivery: d.deliveryCount };
    const ac = new AbortController();
    running.set(d.sequence, ac);
    // from the start: waiting for lagging read models must not let the order go elsewhere either
    const heartbeat = setInterval(() => d.working(), deps.heartbeatMs);
    try {
      const state = await deps.stateAt(order.node_id, order.position);
      if (!isCurrent(state, order)) {
        await d.ack();
        skipped++;
        log.debug(fields, 'work order no longer current; acked without running');
        return;
      }
      log.info(fields, 'work order running');
      const runner = {
        ...deps,
        reportStep: (o: WorkOrder, outcome: Parameters<typeof deps.reportStep>[1]) => reliably(() => deps.reportStep(o, outcome), ac.signal, fields),
        reportPower: (o: WorkOrder, result: Parameters<typeof deps.reportPower>[1]) => reliably(() => deps.reportPower(o, result), ac.signal, fields),
      };
      const reported = await runOrder(runner, order, state, ac.signal);
      if (!reported) {
        d.nak(0); // stopped: another process takes it now
        return;
      }
      await d.ack();
      completed++;
      log.info(fields, 'work order done');
    } catch (err) {
      if (ac.signal.aborted) {
        d.nak(0); // stopped: another process takes it now
        return;
      }
      const s = settlementFor(err, d.deliveryCount);
      log.warn({ ...fields, err, settlement: s }, 'work order failed');
      throw err; // the bus adapter settles it with the same policy
    } finally {
      clearInterval(heartbeat);
      running.delete(d.sequence);
    }
  }

  return {
    async start(): Promise<void> {
      if (subscription || stopped) return;
      subscription = await deps.bus.consumeWork(handle, { concurrency: deps.concurrency });
    },
    stats: () => ({ queued: 0, running: running.size, completed, skipped }),
    /** Stops pulling and aborts running orders (naked: redelivered to another process at once). */
    async stop(): Promise<void> {
      stopped = true;
      const s = subscription;
      subscription = null;
      for (const ac of running.values()) ac.abort();
      await s?.close();
    },
  };
}

export type WorkConsumer = ReturnType<typeof createWorkConsumer>;
