/**
 * The work-plane port of stacks: one `ResourceWorker` per resource type runs the actions the
 * stack actor orders (`ResourceActionStarted`), and the stack conductor reports the outcome back
 * as `ReportResourceOutcome`. Workers are plain async functions of the order; they never touch
 * the stack's stream themselves.
 */
import type { StackWorkOrder } from '../../domain/stack/work.js';

/** What a worker gets besides the order. */
export interface ResourceWorkContext {
  stack: { id: string; owner: string; name: string };
  /** Aborted when the process stops or the action is no longer wanted. */
  signal: AbortSignal;
  /** Long actions call this regularly (keeps a bus delivery alive). */
  heartbeat(): void;
}

/** Outputs of a successful action: physical id + attributes (create/update), or null (delete). */
export type ResourceOutputs = { physical_id: string | null; attributes: Record<string, unknown> } | null;

/** Runs one resource action. Throw ResourceActionFailed for a failure the stack should see. */
export interface ResourceWorker {
  readonly type: string;
  run(order: StackWorkOrder, ctx: ResourceWorkContext): Promise<ResourceOutputs>;
}

/** A failed action with its stable reason code (e.g. `no_capacity`, `resource_failed`). */
export class ResourceActionFailed extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ResourceActionFailed';
  }
}
