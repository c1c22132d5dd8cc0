/**
 * The driver port: what a conductor worker calls to do real work on a machine.
 * Drivers never touch the event store; their outcomes go back to the node actor as commands.
 */

export const DriverOperations = [
  'verify', 'inspect', 'deploy', 'clean', 'teardown', 'rescue', 'unrescue', 'adopt', 'service',
] as const;
export type DriverOperation = (typeof DriverOperations)[number];

export type PowerState = 'power on' | 'power off';
export type PowerTarget = 'power on' | 'power off' | 'rebooting' | 'soft rebooting' | 'soft power off';

/** The outcome of one step of a provision operation. */
export type StepOutcome =
  | { kind: 'done' }
  | { kind: 'fail'; message: string }
  | { kind: 'wait' }
  | { kind: 'hold' };

/** What a driver is given about a node: its id and its driver_info with secrets in clear. */
export interface DriverNode {
  id: string;
  driver_info: Record<string, unknown>;
}

export interface StepContext {
  /** 'start' when the operation enters its state; 'resume' after an agent callback (resume). */
  phase: 'start' | 'resume';
  signal: AbortSignal;
}

export interface Driver {
  readonly name: string;
  runStep(node: DriverNode, op: DriverOperation, ctx: StepContext): Promise<StepOutcome>;
  /** Performs a power action and returns the resulting power state. Throws DriverError. */
  setPower(node: DriverNode, target: PowerTarget, signal: AbortSignal): Promise<PowerState>;
  /** Reads the real power state. Throws DriverError (transient when the BMC is unreachable). */
  getPower(node: DriverNode, signal: AbortSignal): Promise<PowerState>;
}

/** `transient`: worth retrying later (BMC unreachable, timeout). `permanent`: retrying will not help (bad credentials). */
export type DriverErrorKind = 'transient' | 'permanent';

export class DriverError extends Error {
  readonly kind: DriverErrorKind;
  constructor(kind: DriverErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DriverError';
    this.kind = kind;
  }
}
