/**
 * What a stack's state asks of the world, for the services that follow the log (work plane,
 * deadline scheduler), like the node's running step and deadline: derived from the folded state
 * only, so they can be reconciled after a restart without re-reading the stream.
 */
import type { StackEventMap } from '../../../machines/stack/stack.events.js';
import type { StackState } from './state.js';

/** A work order: the data of the `ResourceActionStarted` event that started the action. */
export type StackWorkOrder = StackEventMap['ResourceActionStarted'];

/**
 * The work orders whose worker has not reported yet (in flight and not held), in record order.
 * Dispatching one twice is harmless: the second report names an action no longer in flight.
 */
export function pendingWorkOrders(s: StackState): StackWorkOrder[] {
  return Object.values(s.records)
    .filter((r) => r.action !== null && r.action.held === null)
    .sort((a, b) => a.seq - b.seq)
    .map((r) => r.action!.order);
}

/** The durable timer to arm: the running traversal's deadline (answer with `ExpireTimeout`). */
export function pendingDeadline(s: StackState): { traversal_id: string; deadline_at: string } | null {
  const t = s.traversal;
  return t && t.state === 'running' ? { traversal_id: t.id, deadline_at: t.deadline_at } : null;
}

/** Names of the resources whose newest action waits for a signal (hold_on), for the view and docs. */
export function heldResources(s: StackState): string[] {
  return [...new Set(Object.values(s.records).filter((r) => r.action?.hold && r.action.held !== null).map((r) => r.name))].sort();
}
