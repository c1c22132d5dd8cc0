/**
 * The in-process work plane: runs driver steps (work orders) with bounded concurrency and
 * reports each outcome back to the node actor as an ordinary command. Orders are derived from
 * the read model (a node whose operation has a current step), so after a crash every step
 * that had not reported is dispatched again; a duplicate outcome is ignored by the actor.
 */
import type { DriverOperation, Driver, DriverNode, PowerTarget, StepOutcome } from '../../ports/driver.js';
import { DriverError } from '../../ports/driver.js';
import type { Logger } from '../../ports/logger.js';
import type { PowerResult } from '../../domain/node/commands.js';
import type { NodeState } from '../../domain/node/state.js';

export interface WorkOrder {
  node_id: string;
  op_id: string;
  step_id: string;
  kind: 'step' | 'power';
  operation: string;
  phase: 'start' | 'resume';
}

export interface OrderRunnerDeps {
  drivers: Record<string, Driver>;
  /** The node as the driver needs it (secrets opened), or null if it is gone. */
  driverNode(state: NodeState): DriverNode;
  reportStep(order: WorkOrder, outcome: StepOutcome): Promise<void>;
  reportPower(order: WorkOrder, result: PowerResult): Promise<void>;
  /** Retries of a transient driver error before the step fails. */
  transientRetries?: number;
}

export interface ConductorDeps extends OrderRunnerDeps {
  concurrency: number;
  log: Logger;
}

/**
 * Runs one work order: the driver call (transient errors retried, any final error becomes a
 * `fail` outcome) and the report of its outcome. Shared by the in-process conductor below and the
 * bus consumer (src/app/cluster/work-consumer.ts). Resolves once the outcome was reported (false:
 * `signal` was aborted, nothing was reported); rejects when there is no such driver or the report
 * failed, so the caller decides what a failure means (log it, or nak the delivery).
 */
export async function runOrder(deps: OrderRunnerDeps, order: WorkOrder, state: NodeState, signal: AbortSignal): Promise<boolean> {
  const driver = deps.drivers[state.driver];
  if (!driver) throw new DriverError('permanent', `no driver named ${state.driver}`);
  const node = deps.driverNode(state);
  const retries = deps.transientRetries ?? 2;
  /** Runs `fn`, retrying transient driver errors; any final error becomes its message. */
  const attempt = async <T>(fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; message: string }> => {
    for (let n = 0; ; n++) {
      try {
        return { ok: true, value: await fn() };
      } catch (err) {
        const transient = err instanceof DriverError && err.kind === 'transient';
        if (signal.aborted || !transient || n >= retries) return { ok: false, message: err instanceof Error ? err.message : String(err) };
      }
    }
  };
  if (order.kind === 'power') {
    const r = await attempt(() => driver.setPower(node, order.operation as PowerTarget, signal));
    if (signal.aborted) return false;
    await deps.reportPower(order, r.ok ? { ok: true, power_state: r.value } : r);
  } else {
    const r = await attempt(() => driver.runStep(node, order.operation as DriverOperation, { phase: order.phase, signal }));
    if (signal.aborted) return false;
    await deps.reportStep(order, r.ok ? r.value : { kind: 'fail', message: r.message });
  }
  return true;
}

export function orderOf(s: NodeState): WorkOrder | null {
  const op = s.op;
  if (!op || !op.step_id || !op.operation || s.deleted) return null;
  return {
    node_id: s.id, op_id: op.op_id, step_id: op.step_id, kind: op.kind === 'power' ? 'power' : 'step',
    operation: op.kind === 'power' ? op.action : op.operation, phase: op.phase ?? 'start',
  };
}

export function createConductor(deps: ConductorDeps) {
  const queue: { order: WorkOrder; state: NodeState }[] = [];
  const seen = new Set<string>(); // step ids dispatched by this process (bounded below)
  const inflight = new Map<string, AbortController>();
  let running = 0;
  let stopped = false;
  let completed = 0;

  function remember(stepId: string): void {
    seen.add(stepId);
    if (seen.size > 200_000) seen.delete(seen.values().next().value!);
  }

  /** Dispatches the node's current step unless this process already did. */
  function reconcile(s: NodeState): void {
    const order = orderOf(s);
    if (!order || seen.has(order.step_id) || stopped) return;
    remember(order.step_id);
    queue.push({ order, state: s });
    pump();
  }

  function pump(): void {
    while (!stopped && running < deps.concurrency && queue.length > 0) {
      const job = queue.shift()!;
      running++;
      void run(job.order, job.state).finally(() => {
        running--;
        completed++;
        pump();
      });
    }
  }

  async function run(order: WorkOrder, state: NodeState): Promise<void> {
    const ac = new AbortController();
    inflight.set(order.step_id, ac);
    try {
      await runOrder(deps, order, state, ac.signal);
    } catch (err) {
      if (!stopped) deps.log.error({ err, node_id: order.node_id, step_id: order.step_id }, 'work order could not be reported');
    } finally {
      inflight.delete(order.step_id);
    }
  }

  return {
    reconcile,
    stats: () => ({ queued: queue.length, running, completed }),
    /** Stops taking orders and aborts running ones (they are re-dispatched after a restart). */
    stop(): void {
      stopped = true;
      for (const ac of inflight.values()) ac.abort();
    },
  };
}

export type Conductor = ReturnType<typeof createConductor>;
