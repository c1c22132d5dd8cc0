/**
 * Power-state sync: every period, ask each node's driver for its real power state and report it
 * to the node actor (which records differences and counts failures). Bounded concurrency, and
 * the nodes are spread over the period so a large fleet does not stampede its BMCs.
 */
import type { Clock } from '../../ports/clock.js';
import type { Driver, DriverNode } from '../../ports/driver.js';
import type { Logger } from '../../ports/logger.js';
import type { PowerResult } from '../../domain/node/commands.js';
import type { NodeState } from '../../domain/node/state.js';

export interface PowerSyncDeps {
  clock: Clock;
  periodS: number;
  concurrency: number;
  drivers: Record<string, Driver>;
  log: Logger;
  nodes(): NodeState[];
  driverNode(s: NodeState): DriverNode;
  observe(nodeId: string, result: PowerResult): Promise<unknown>;
}

export function createPowerSync(deps: PowerSyncDeps) {
  let cancel: (() => void) | null = null;
  let stopped = false;
  let rounds = 0;

  /** One pass over every node; resolves when all were checked. */
  async function syncOnce(spreadMs = 0): Promise<void> {
    const list = deps.nodes().filter((s) => s.exists && !s.deleted);
    const gap = list.length > 0 ? spreadMs / list.length : 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (!stopped && next < list.length) {
        const i = next++;
        if (gap > 0) await new Promise<void>((r) => deps.clock.setTimeout(r, Math.max(0, i * gap - (deps.clock.now() - started))));
        await check(list[i]!);
      }
    };
    const started = deps.clock.now();
    await Promise.all(Array.from({ length: Math.min(deps.concurrency, list.length) }, worker));
    rounds++;
  }

  async function check(s: NodeState): Promise<void> {
    const driver = deps.drivers[s.driver];
    if (!driver) return;
    let result: PowerResult;
    try {
      result = { ok: true, power_state: await driver.getPower(deps.driverNode(s), AbortSignal.timeout(30_000)) };
    } catch (err) {
      result = { ok: false, message: err instanceof Error ? err.message : String(err) };
    }
    await deps.observe(s.id, result).catch((err) => deps.log.error({ err, node_id: s.id }, 'power sync report failed'));
  }

  function schedule(): void {
    if (stopped || deps.periodS <= 0) return;
    const periodMs = deps.periodS * 1000;
    cancel = deps.clock.setTimeout(() => {
      void syncOnce(periodMs * 0.8).finally(schedule);
    }, periodMs);
  }

  return {
    start: schedule,
    syncOnce,
    rounds: () => rounds,
    stop(): void {
      stopped = true;
      cancel?.();
    },
  };
}
