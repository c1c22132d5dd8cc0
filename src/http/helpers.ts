/** Small helpers shared by the routes: request metadata, Prefer: wait, task answers. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RequestMeta } from '../app/nodes/node-service.js';
import { isTerminal, taskView, type TaskRecord } from '../domain/tasks.js';
import { IroncladError } from '../domain/errors.js';
import type { HttpDeps } from './context.js';
import type { BacklogTicket } from '../app/backlog.js';

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

/**
 * Takes a slot in the global backlog for a command that may create a task, or refuses it while the
 * backlog is at IRONCLAD_MAX_PENDING (503 `overloaded` + Retry-After). Not exported: a caller that
 * forgot to settle the ticket would hold its slot for ever; routes use `runAdmitted`.
 */
function admitTask(deps: HttpDeps): BacklogTicket {
  const res = deps.backlog.admit();
  if ('ticket' in res) return res.ticket;
  const wait = res.retryAfterS;
  throw new IroncladError('overloaded', `${deps.backlog.pending()} tasks are pending (limit ${deps.config.IRONCLAD_MAX_PENDING}); retry in about ${wait} s.`, {
    retry_after_s: wait, pending_tasks: deps.backlog.pending(), drain_rate_per_s: Math.round(deps.backlog.drainRate() * 10) / 10,
  });
}

/**
 * Runs a command that may create a task within the global backlog limit: 503 `overloaded` without
 * running it when the backlog is full; otherwise its slot is settled whatever happens.
 */
export async function runAdmitted<T extends { position: string | null; coalesced?: boolean }>(deps: HttpDeps, command: () => Promise<T>): Promise<T> {
  const ticket = admitTask(deps);
  try {
    const out = await command();
    ticket.settle(out.coalesced ? null : out.position);
    return out;
  } catch (err) {
    ticket.settle(null);
    throw err;
  }
}

/** Refuses a callback_url that IRONCLAD_CALLBACK_ALLOW does not allow (400 naming the field). */
export async function checkCallbackUrl(deps: HttpDeps, url: string | undefined): Promise<void> {
  if (url === undefined) return;
  const reason = await deps.callbackAllow.check(url);
  if (reason) throw new IroncladError('validation_failed', `callback_url is not allowed: ${reason}.`, { errors: [{ path: 'body.callback_url', message: reason }] });
}
