/**
 * Power-state sync (node-lifecycle.md): every period, ask each node's driver for its real power
 * state and report it to the node actor, which records differences, counts consecutive failures
 * and sets or clears the power fault. The sync only reads and reports; every decision is the
 * node decider's (src/domain/node/power.ts).
 *
 * A large fleet must not stampede its BMCs: at most `concurrency` reads run at once, and the
 * nodes' checks are spread evenly over the first 80% of the period (the rest is slack for slow
 * BMCs), so a pass normally ends before the next one is due and each node is read about once a
 * period. Passes never overlap: one that overruns its period is followed by the next at once.
 */
import type { Clock } from '../../ports/clock.js';
import type { Driver, DriverNode } from '../../ports/driver.js';
import type { Logger } from '../../ports/logger.js';
import type { PowerResult } from '../../domain/node/commands.js';
import type { NodeState } from '../../domain/node/state.js';

/** The share of the period over which one pass spreads its checks. */
export const SPREAD_SHARE = 0.8;
/** One read may take this long before it counts as a failure (the driver retries inside it). */
const READ_TIMEOUT_MS = 30_000;

export interface PowerSyncDeps {
  clock: Clock;
  /** Seconds between the starts of two passes; 0 disables the timer. */
  periodS: number;
  /** Most power reads in flight at once (per process). */
  concurrency: number;
  drivers: Record<string, Driver>;
  log: Logger;
  nodes(): NodeState[];
  driverNode(s: NodeState): DriverNode;
  observe(nodeId: string, result: PowerResult): Promise<unknown>;
}

export interface PowerSync {
  /** Arms the periodic timer: the first pass starts one period from now (again after a stop). */
  start(): void;
  /**
   * One pass over every live node; resolves when all were checked and reported. `spreadMs`
   * spreads the checks' start times evenly over that span of the clock (0: all at once, still
   * bounded by the concurrency). Never rejects because of one node.
   */
  syncOnce(spreadMs?: number): Promise<void>;
  /** Passes completed so far. */
  rounds(): number;
  /** Cancels the timer and pending spread waits, and aborts reads in flight; nothing is reported after it. */
  stop(): void;
}

export function createPowerSync(deps: PowerSyncDeps): PowerSync {
  let cancelTimer: (() => void) | null = null;
  let stopped = false;
  let rounds = 0;
  const inFlight = new Set<AbortController>();
  /** Wake-ups of workers waiting for their slot in the spread; stop() releases them. */
  const sleepers = new Set<() => void>();

  function sleepUntil(at: number): Promise<void> {
    const ms = at - deps.clock.now();
    if (ms <= 0 || stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        sleepers.delete(wake);
        cancel();
        resolve();
      };
      const cancel = deps.clock.setTimeout(wake, ms);
      sleepers.add(wake);
    });
  }

  async function syncOnce(spreadMs = 0): Promise<void> {
    const list = deps.nodes().filter((s) => s.exists && !s.deleted);
    const started = deps.clock.now();
    const gap = list.length > 0 ? spreadMs / list.length : 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!stopped && next < list.length) {
        const i = next++;
        await sleepUntil(started + i * gap);
        if (stopped) return;
        await check(list[i]!);
      }
    };
    const workers = Math.max(1, Math.min(deps.concurrency, list.length));
    await Promise.all(Array.from({ length: workers }, worker));
    rounds++;
  }

  async function check(s: NodeState): Promise<void> {
    const driver = deps.drivers[s.driver];
    if (!driver) return;
    // One controller per read (stop() aborts those in flight); the bound runs on the clock port.
    const ac = new AbortController();
    inFlight.add(ac);
    const cancelTimeout = deps.clock.setTimeout(() => ac.abort(new Error(`power read timed out after ${READ_TIMEOUT_MS} ms`)), READ_TIMEOUT_MS);
    let result: PowerResult;
    try {
      result = { ok: true, power_state: await driver.getPower(deps.driverNode(s), ac.signal) };
    } catch (err) {
      result = { ok: false, message: err instanceof Error ? err.message : String(err) };
    } finally {
      cancelTimeout();
      inFlight.delete(ac);
    }
    if (stopped) return; // an aborted read is not a BMC failure
    try {
      await deps.observe(s.id, result);
    } catch (err) {
      deps.log.error({ err, node_id: s.id }, 'power sync report failed');
    }
  }

  /** Arms the next pass `delayMs` from now; each pass re-arms for one period after its own start. */
  function schedule(delayMs: number): void {
    if (stopped || deps.periodS <= 0) return;
    const periodMs = deps.periodS * 1000;
    cancelTimer = deps.clock.setTimeout(() => {
      cancelTimer = null;
      const startedAt = deps.clock.now();
      syncOnce(periodMs * SPREAD_SHARE)
        .catch((err: unknown) => deps.log.error({ err }, 'power sync pass failed'))
        .finally(() => schedule(Math.max(0, startedAt + periodMs - deps.clock.now())));
    }, delayMs);
  }

  return {
    start(): void {
      stopped = false; // a leader that lost and regained the role starts again
      cancelTimer?.();
      schedule(deps.periodS * 1000);
    },
    syncOnce,
    rounds: () => rounds,
    stop(): void {
      stopped = true;
      cancelTimer?.();
      cancelTimer = null;
      for (const wake of [...sleepers]) wake();
      for (const ac of inFlight) ac.abort();
    },
  };
}
