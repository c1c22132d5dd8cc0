/**
 * The stack work plane (in-process): follows the stacks read model, runs each work order
 * (`ResourceActionStarted` whose worker has not reported) with the `ResourceWorker` registered
 * for its resource type, and reports the outcome to the stack actor as `ReportResourceOutcome`.
 *
 * Crash story, as for nodes: orders are derived from the folded state only, so after a restart
 * every order that had not reported runs again (`reconcile` at start from the read model); a
 * duplicate or stale report is ignored by the actor. Workers must therefore be idempotent.
 */
import type { ResourceOutcomeReport } from '../../domain/stack/commands.js';
import type { StackState } from '../../domain/stack/state.js';
import { pendingWorkOrders, type StackWorkOrder } from '../../domain/stack/work.js';
import type { Logger } from '../../ports/logger.js';
import { createWorkPool } from '../work/work-pool.js';
import { ResourceActionFailed, type ResourceOutputs, type ResourceWorker, type ResourceWorkContext } from './resource-worker.js';

export interface StackConductorDeps {
  workers: readonly ResourceWorker[];
  concurrency: number;
  log: Logger;
  /** Sends the report to the stack actor (as SYSTEM). A rejection lets the order be dispatched again. */
  report(stackId: string, report: ResourceOutcomeReport): Promise<void>;
}

export interface StackJob {
  stack: ResourceWorkContext['stack'];
  order: StackWorkOrder;
}
type Job = StackJob;

export function createStackConductor(deps: StackConductorDeps) {
  const registry = new Map<string, ResourceWorker>();
  for (const w of deps.workers) {
    if (registry.has(w.type)) throw new Error(`two resource workers for type ${w.type}`);
    registry.set(w.type, w);
  }
  const pool = createWorkPool<Job>({ concurrency: deps.concurrency, run });

  /**
   * Runs one order's worker and builds its report; null when `signal` aborted (nothing to report).
   * Shared by the pool below and the bus consumer (src/app/cluster/work-consumer.ts, NATS mode).
   */
  async function outcomeOf({ stack, order }: Job, signal: AbortSignal, heartbeat: () => void = () => undefined): Promise<ResourceOutcomeReport | null> {
    const base = { traversal_id: order.traversal_id, action_id: order.action_id, record_id: order.record_id, phase: order.phase };
    let report: ResourceOutcomeReport;
    try {
      const outputs = await perform(stack, order, signal, heartbeat);
      report = { ...base, outcome: 'complete', outputs: order.action === 'DELETE' ? null : outputs, error: null };
    } catch (err) {
      if (signal.aborted) return null; // stopping: not reported, so it runs again after the restart
      const failed = err instanceof ResourceActionFailed;
      if (!failed) deps.log.error({ err, stack_id: stack.id, action_id: order.action_id, type: order.type }, 'resource worker crashed');
      const message = err instanceof Error ? err.message : String(err);
      report = { ...base, outcome: 'failed', outputs: null, error: { code: failed ? err.code : 'resource_failed', message } };
    }
    return signal.aborted ? null : report;
  }

  async function run({ stack, order }: Job, signal: AbortSignal): Promise<void> {
    const report = await outcomeOf({ stack, order }, signal);
    if (!report) return;
    try {
      await deps.report(stack.id, report);
    } catch (err) {
      pool.forget(order.action_id);
      deps.log.error({ err, stack_id: stack.id, action_id: order.action_id }, 'resource outcome could not be reported');
    }
  }

  function perform(stack: Job['stack'], order: StackWorkOrder, signal: AbortSignal, heartbeat: () => void): Promise<ResourceOutputs> {
    const worker = registry.get(order.type);
    if (!worker) return Promise.reject(new ResourceActionFailed('resource_failed', `no worker handles resource type ${order.type} in this process`));
    return worker.run(order, { stack, signal, heartbeat });
  }

  return {
    /** Dispatches every order of the stack that this process has not dispatched yet. */
    reconcile(s: StackState): void {
      if (!s.exists) return;
      const stack = { id: s.id, owner: s.owner, name: s.name ?? s.id };
      for (const order of pendingWorkOrders(s)) pool.submit(order.action_id, { stack, order });
    },
    outcomeOf,
    /** The resource types this process can run. */
    types: (): string[] => [...registry.keys()].sort(),
    stats: pool.stats,
    /** Stops taking orders and aborts running ones (they run again after a restart). */
    stop: pool.stop,
  };
}

export type StackConductor = ReturnType<typeof createStackConductor>;
