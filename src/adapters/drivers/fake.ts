/**
 * The fake driver (node-lifecycle.md): per operation, `fake_<op>` picks the outcome (done, fail,
 * wait, hold) and `fake_<op>_ms` how long it takes. After an agent callback (phase 'resume') a
 * configured wait/hold has already happened, so the step finishes with done (fail stays fail).
 * `fake_bmc_reachable: false` makes power reads fail; `fake_power_state` is the real power state.
 */
import type { Clock } from '../../ports/clock.js';
import { DriverError, type Driver, type DriverNode, type PowerState, type StepOutcome } from '../../ports/driver.js';

const DEFAULT_MS = 50;

function delay(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const cancel = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      cancel();
      reject(new DriverError('transient', 'operation aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

const msOf = (info: Record<string, unknown>, key: string): number => {
  const v = info[key];
  return typeof v === 'number' && v >= 0 ? v : DEFAULT_MS;
};

export function createFakeDriver(clock: Clock): Driver & { powerStates: Map<string, PowerState> } {
  // The "real" power state of each fake machine (what a BMC would report), kept in memory.
  const powerStates = new Map<string, PowerState>();
  const realPower = (node: DriverNode): PowerState => {
    const configured = node.driver_info['fake_power_state'];
    if (configured === 'power on' || configured === 'power off') return configured;
    return powerStates.get(node.id) ?? 'power off';
  };
  const reachable = (node: DriverNode): void => {
    if (node.driver_info['fake_bmc_reachable'] === false) throw new DriverError('transient', 'fake BMC unreachable (fake_bmc_reachable: false)');
  };
  return {
    name: 'fake',
    powerStates,
    async runStep(node, op, ctx): Promise<StepOutcome> {
      const info = node.driver_info;
      await delay(clock, msOf(info, `fake_${op}_ms`), ctx.signal);
      const outcome = info[`fake_${op}`] ?? 'done';
      if (outcome === 'fail') return { kind: 'fail', message: `fake ${op} failed (fake_${op}: "fail")` };
      if (ctx.phase === 'resume') return { kind: 'done' };
      if (outcome === 'wait') return { kind: 'wait' };
      if (outcome === 'hold') return { kind: 'hold' };
      return { kind: 'done' };
    },
    async setPower(node, target, signal) {
      reachable(node);
      await delay(clock, msOf(node.driver_info, 'fake_power_ms'), signal);
      if (node.driver_info['fake_power'] === 'fail') throw new DriverError('permanent', 'fake power action failed (fake_power: "fail")');
      const result: PowerState = target === 'power off' || target === 'soft power off' ? 'power off' : 'power on';
      powerStates.set(node.id, result);
      return result;
    },
    async getPower(node) {
      reachable(node);
      return realPower(node);
    },
  };
}
