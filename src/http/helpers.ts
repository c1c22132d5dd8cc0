/** Small helpers shared by the routes: request metadata, Prefer: wait, task answers. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RequestMeta } from '../app/nodes/node-service.js';
import { isTerminal, taskView, type TaskRecord } from '../domain/tasks.js';
import { IroncladError } from '../domain/errors.js';
import type { HttpDeps } from './context.js';

export function meta(req: FastifyRequest): RequestMeta {
  const key = req.headers['idempotency-key'];
  return { request_id: req.id, idempotency_key: typeof key === 'string' ? key : null };
}

/** Parses `Prefer: wait=N` (N ≤ 60). */
export function preferWait(req: FastifyRequest): number | null {
  const h = req.headers['prefer'];
  const m = typeof h === 'string' ? /(?:^|[,;\s])wait=(\d+)/.exec(h) : null;
  return m ? Math.min(60, Number(m[1])) : null;
}

/** Waits (without polling) until the task is terminal or `seconds` pass. */
export async function awaitTerminal(deps: HttpDeps, task: TaskRecord, seconds: number): Promise<TaskRecord> {
  if (isTerminal(task.state) || seconds <= 0) return task;
  const pending = deps.waiters.wait(task.id, seconds * 1000);
  const now = deps.tasksRM.get(task.id); // it may have finished before we started waiting
  if (now && isTerminal(now.state)) deps.waiters.notify([now]);
  return (await pending) ?? deps.tasksRM.get(task.id) ?? task;
}

/**
 * Answers a command that created or re-used a task: 202 + Location, or 200 when `Prefer: wait`
 * saw the task finish.
 */
export async function sendTask(deps: HttpDeps, req: FastifyRequest, reply: FastifyReply, task: TaskRecord, extra: { coalesced?: boolean; position?: string | null }): Promise<FastifyReply> {
  const wait = preferWait(req);
  let t = task;
  if (wait !== null) {
    reply.header('Preference-Applied', `wait=${wait}`);
    t = await awaitTerminal(deps, task, wait);
  }
  if (extra.position) reply.header('Ironclad-Position', extra.position);
  reply.header('Location', `/v1/tasks/${t.id}`);
  if (!isTerminal(t.state)) reply.header('Retry-After', '1');
  const body = { ...taskView(t), ...(extra.coalesced ? { coalesced: true } : {}) };
  return reply.code(wait !== null && isTerminal(t.state) ? 200 : 202).send(body);
}

/** Refuses a new command while the global backlog is over IRONCLAD_MAX_PENDING (503 + Retry-After). */
export function checkBacklog(deps: HttpDeps): void {
  const wait = deps.backlog.retryAfter();
  if (wait === null) return;
  throw new IroncladError('overloaded', `${deps.backlog.pending()} tasks are pending (limit ${deps.config.IRONCLAD_MAX_PENDING}); retry in about ${wait} s.`, {
    retry_after_s: wait, pending_tasks: deps.backlog.pending(), drain_rate_per_s: Math.round(deps.backlog.drainRate() * 10) / 10,
  });
}

/** Refuses a callback_url that IRONCLAD_CALLBACK_ALLOW does not allow (400 naming the field). */
export async function checkCallbackUrl(deps: HttpDeps, url: string | undefined): Promise<void> {
  if (url === undefined) return;
  const reason = await deps.callbackAllow.check(url);
  if (reason) throw new IroncladError('validation_failed', `callback_url is not allowed: ${reason}.`, { errors: [{ path: 'body.callback_url', message: reason }] });
}
