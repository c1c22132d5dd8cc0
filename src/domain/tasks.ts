/**
 * The task record and its reducer, shared by the node actor (active tasks), the tasks read
 * model and the 202 answers, so every view of a task is computed the same way.
 */
import type { TaskError, TaskKind, TaskState } from '../../machines/node/node.events.js';
import { redactDeep } from './secrets.js';

export interface CallbackStatus {
  url: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  /** When the next attempt is due (null before the first and after the last). */
  next_attempt_at: string | null;
  last_error: string | null;
}

export interface TaskRecord {
  id: string;
  action: string;
  kind: TaskKind | 'stack';
  resource_type: 'node' | 'stack';
  resource_id: string;
  owner: string;
  params: Record<string, unknown>;
  state: TaskState;
  coalesced_count: number;
  error: TaskError | null;
  callback: CallbackStatus | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  requested_by: string;
  idempotency_key: string | null;
  /** Global position of the last event that changed this task. */
  position: string | null;
}

export const TERMINAL_TASK_STATES: readonly TaskState[] = ['succeeded', 'failed', 'cancelled'];
export const isTerminal = (s: TaskState): boolean => TERMINAL_TASK_STATES.includes(s);

/** A stored event as the task reducer needs it (a subset of the event envelope). */
export interface TaskEventInput {
  type: string;
  data: Record<string, unknown>;
  time: string;
  position?: string | null;
}

/** The task id an event is about, if any. */
export function taskIdOf(e: { type: string; data: Record<string, unknown> }): string | null {
  const id = e.data['task_id'];
  return typeof id === 'string' ? id : null;
}

/**
 * Applies one event to a task (null = not yet created). Context gives the entity for TaskCreated.
 * Unknown event types leave the task as it is.
 */
export function applyTaskEvent(
  task: TaskRecord | null,
  e: TaskEventInput,
  entity: { resource_type: 'node' | 'stack'; resource_id: string; owner: string },
): TaskRecord | null {
  const d = e.data as Record<string, any>;
  const pos = e.position ?? null;
  switch (e.type) {
    case 'TaskCreated':
      return {
        id: d.task_id,
        action: d.action,
        kind: d.kind,
        resource_type: entity.resource_type,
        resource_id: entity.resource_id,
        owner: entity.owner,
        params: d.params ?? {},
        state: d.queued ? 'queued' : 'running',
        coalesced_count: 0,
        error: null,
        callback: d.callback_url ? { url: d.callback_url, state: 'pending', attempts: 0, next_attempt_at: null, last_error: null } : null,
        created_at: e.time,
        started_at: d.queued ? null : e.time,
        finished_at: null,
        requested_by: d.requested_by,
        idempotency_key: d.idempotency_key ?? null,
        position: pos,
      };
    case 'ProvisionActionStarted':
    case 'PowerActionStarted':
      if (!task || task.state !== 'queued') return task ? { ...task, position: pos ?? task.position } : task;
      return { ...task, state: 'running', started_at: e.time, position: pos };
    case 'TaskCoalesced':
      return task && { ...task, coalesced_count: task.coalesced_count + 1, position: pos };
    case 'TaskCancelled':
      return task && { ...task, state: 'cancelled', error: { code: 'cancelled', message: d.reason }, finished_at: e.time, position: pos };
    case 'TaskFinished':
      return task && { ...task, state: d.state, error: d.error ?? null, finished_at: e.time, position: pos };
    case 'CallbackAttempted':
      return task && task.callback
        ? {
            ...task,
            callback: {
              ...task.callback, attempts: Math.max(task.callback.attempts, d.attempt),
              state: d.outcome === 'delivered' ? 'delivered' : d.final ? 'failed' : 'pending',
              next_attempt_at: d.outcome === 'delivered' ? null : d.next_attempt_at, last_error: d.outcome === 'delivered' ? null : d.error,
            },
            position: pos,
          }
        : task;
    default:
      return task;
  }
}

/** The public JSON of a task (api.md "Tasks"). */
export function taskView(t: TaskRecord) {
  return {
    id: t.id,
    action: t.action,
    resource_type: t.resource_type,
    resource_id: t.resource_id,
    state: t.state,
    coalesced_count: t.coalesced_count,
    error: t.error,
    callback: t.callback,
    created_at: t.created_at,
    started_at: t.started_at,
    finished_at: t.finished_at,
    requested_by: t.requested_by,
    idempotency_key: t.idempotency_key,
    // Command parameters may carry secrets (e.g. rescue_password): never shown back.
    params: redactDeep(t.params) as Record<string, unknown>,
  };
}

/** The short form used in the node view (current_task, queued_tasks) and in busy errors. */
export function taskSummary(t: TaskRecord) {
  return { id: t.id, action: t.action, state: t.state, created_at: t.created_at, started_at: t.started_at };
}
