/**
 * Delivers a terminal task's callback: a signed POST of the task JSON, retried with exponential
 * backoff. Every attempt is recorded as an event (CallbackAttempted) on the task's node stream,
 * so delivery state survives restarts: at start, every terminal task whose callback is still
 * pending is re-armed for its next attempt. Redirects are not followed; time and size are bounded.
 */
import type { Clock } from '../../ports/clock.js';
import type { Logger } from '../../ports/logger.js';
import { isTerminal, taskView, type TaskRecord } from '../../domain/tasks.js';
import type { CallbackAttempt } from '../../../machines/node/node.events.js';
import type { CallbackAllowList } from './allow-list.js';
import { signPayload } from './signature.js';

export type AttemptRecord = CallbackAttempt;

export interface CallbackDispatcherDeps {
  clock: Clock;
  log: Logger;
  allow: CallbackAllowList;
  secretFor(tenant: string): string;
  record(task: TaskRecord, attempt: AttemptRecord): Promise<void>;
  maxAttempts: number;
  backoffMs: number;
  timeoutMs: number;
  /** Sends the request; injectable for tests of the schedule. Defaults to fetch without redirects. */
  post?: (url: string, body: string, headers: Record<string, string>, timeoutMs: number) => Promise<number>;
}

async function defaultPost(url: string, body: string, headers: Record<string, string>, timeoutMs: number): Promise<number> {
  const res = await fetch(url, { method: 'POST', body, headers, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  await res.body?.cancel(); // we never read the answer: bounded size by not reading it at all
  return res.status;
}

export function createCallbackDispatcher(deps: CallbackDispatcherDeps) {
  const armed = new Map<string, () => void>();
  const post = deps.post ?? defaultPost;
  let stopped = false;
  let delivered = 0;

  /** Arms the next attempt of `t` if its callback is pending and it is terminal. */
  function reconcile(t: TaskRecord): void {
    if (stopped || !t.callback || t.callback.state !== 'pending' || !isTerminal(t.state)) return;
    const key = `${t.id}#${t.callback.attempts + 1}`;
    if (armed.has(key)) return;
    const due = t.callback.next_attempt_at ? Date.parse(t.callback.next_attempt_at) - deps.clock.now() : 0;
    const fire = (): void => void attempt(t).finally(() => armed.delete(key));
    if (due <= 0) {
      armed.set(key, () => undefined);
      queueMicrotask(fire);
      return;
    }
    armed.set(key, deps.clock.setTimeout(fire, due));
  }

  async function attempt(t: TaskRecord): Promise<void> {
    const cb = t.callback!;
    const n = cb.attempts + 1;
    const body = JSON.stringify(taskView(t));
    let status: number | null = null;
    let error: string | null = null;
    const reason = await deps.allow.check(cb.url);
    if (reason) error = `target refused: ${reason}`;
    else {
      try {
        const ts = Math.floor(deps.clock.now() / 1000);
        status = await post(cb.url, body, {
          'content-type': 'application/json',
          'user-agent': 'ironclad-callbacks/1',
          'ironclad-signature': signPayload(deps.secretFor(t.owner), ts, body),
          'ironclad-task-id': t.id,
          'ironclad-delivery-attempt': String(n),
        }, deps.timeoutMs);
        if (status < 200 || status >= 300) error = status >= 300 && status < 400 ? `redirect ${status} not followed` : `answered ${status}`;
      } catch (err) {
        error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      }
    }
    if (stopped) return;
    const ok = error === null;
    const final = ok || n >= deps.maxAttempts;
    const next = final ? null : new Date(deps.clock.now() + deps.backoffMs * 2 ** (n - 1)).toISOString();
    if (ok) delivered++;
    await deps.record(t, { task_id: t.id, attempt: n, outcome: ok ? 'delivered' : 'failed', final, status_code: status, error, next_attempt_at: next })
      .catch((err) => deps.log.error({ err, task_id: t.id }, 'could not record a callback attempt'));
  }

  return {
    reconcile,
    delivered: () => delivered,
    /** Cancels the task's armed attempt, if any (its partition moved to another process). */
    forget(taskId: string): void {
      for (const [key, cancel] of armed) {
        if (key.slice(0, key.lastIndexOf('#')) !== taskId) continue;
        cancel();
        armed.delete(key);
      }
    },
    stop(): void {
      stopped = true;
      for (const cancel of armed.values()) cancel();
      armed.clear();
    },
  };
}

export type CallbackDispatcher = ReturnType<typeof createCallbackDispatcher>;
