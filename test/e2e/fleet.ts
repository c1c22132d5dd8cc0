/**
 * Client-side steps shared by the e2e suites, written against the public REST API only:
 * enroll fake nodes, drive them with provision verbs, long-poll tasks, read histories.
 * Not a test file (vitest only collects *.test.ts).
 */
import { expect } from 'vitest';
import type { ServerProcess } from '../support/server-process.js';

export interface Accepted {
  task_id: string;
  /** Ironclad-Position of the append, for read-your-writes on later GETs. */
  position: string | null;
}

export const TERMINAL = ['succeeded', 'failed', 'cancelled'];

/** The provision states in a node's history: `data.to` of every provision transition, in order. */
export const provisionPath = (items: any[]): string[] =>
  items.filter((e) => typeof e.data?.from === 'string' && typeof e.data?.to === 'string').map((e) => e.data.to as string);

export const FULL_PATH = ['verifying', 'manageable', 'cleaning', 'available', 'deploying', 'active'];

export async function enrollFake(s: ServerProcess, driverInfo: Record<string, unknown>, name?: string): Promise<string> {
  const r = await s.http('POST', '/v1/nodes', { driver: 'fake', resource_class: 'baremetal', driver_info: driverInfo, ...(name ? { name } : {}) });
  if (r.status !== 201) throw new Error(`enroll: ${r.status} ${r.text}`);
  return r.json.id as string;
}

/** PUT a provision verb; throws unless the answer is 202 with a task. */
export async function provision(s: ServerProcess, id: string, target: string): Promise<Accepted> {
  const r = await s.http('PUT', `/v1/nodes/${id}/states/provision`, { target });
  if (r.status !== 202) throw new Error(`${target} on ${id}: ${r.status} ${r.text}`);
  return { task_id: r.json.id as string, position: r.headers.get('ironclad-position') };
}

/**
 * Long-polls `GET /v1/tasks/{id}` (Prefer: wait=30, read-your-writes on `position`) until the
 * task is terminal; gives up after `timeoutMs`. Returns the task.
 */
export async function awaitTask(s: ServerProcess, a: Accepted, timeoutMs = 60_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const waitS = Math.max(1, Math.min(30, Math.floor((deadline - Date.now()) / 1000)));
    const headers: Record<string, string> = { prefer: `wait=${waitS}` };
    if (a.position) headers['ironclad-position'] = a.position;
    const r = await s.http('GET', `/v1/tasks/${a.task_id}`, undefined, headers);
    last = `${r.status} ${r.text}`;
    if (r.status === 200 && TERMINAL.includes(r.json.state)) return r.json;
    // 202: not terminal yet; 503 not_caught_up: the read models are catching up after a start.
    if (r.status !== 202 && r.status !== 503) throw new Error(`GET task ${a.task_id}: ${last}`);
  }
  throw new Error(`task ${a.task_id} not terminal after ${timeoutMs} ms; last answer ${last}`);
}

/** manage, then provide, waiting for each task to succeed: the node ends `available`. */
export async function driveToAvailable(s: ServerProcess, id: string): Promise<void> {
  for (const verb of ['manage', 'provide']) {
    const task = await awaitTask(s, await provision(s, id, verb));
    if (task.state !== 'succeeded') throw new Error(`${verb} on ${id} ended ${task.state}: ${JSON.stringify(task.error)}`);
  }
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** The whole history of a node (follows next_cursor, so it does not depend on one page). */
export async function history(s: ServerProcess, id: string): Promise<any[]> {
  const items: any[] = [];
  let from = 0;
  for (;;) {
    const r = await s.http('GET', `/v1/nodes/${id}/history?limit=1000&from_revision=${from}`);
    if (r.status !== 200) throw new Error(`history of ${id}: ${r.status} ${r.text}`);
    items.push(...r.json.items);
    if (r.json.next_cursor === null) return items;
    from = Number(r.json.next_cursor);
  }
}

/**
 * Checks that a node went enroll → … → active exactly once and that its deploy task finished
 * exactly once (and succeeded); returns the history.
 */
export async function expectDeployedOnce(s: ServerProcess, id: string, deployTaskId: string): Promise<any[]> {
  const node = await s.http('GET', `/v1/nodes/${id}`);
  expect(node.status, node.text).toBe(200);
  expect(node.json).toMatchObject({ provision_state: 'active', target_provision_state: null, current_task: null, last_error: null });
  const items = await history(s, id);
  expect(items.map((e) => e.revision), `revisions of ${id} are 0..n-1`).toEqual(items.map((_, i) => i));
  expect(provisionPath(items), `provision transitions of ${id}`).toEqual(FULL_PATH);
  const finished = items.filter((e) => e.type === 'TaskFinished');
  const deployFinished = finished.filter((e) => e.data.task_id === deployTaskId);
  expect(deployFinished, `TaskFinished events of deploy task ${deployTaskId} on ${id}`).toHaveLength(1);
  expect(deployFinished[0].data.state).toBe('succeeded');
  const perTask = new Map<string, number>();
  for (const e of finished) perTask.set(e.data.task_id, (perTask.get(e.data.task_id) ?? 0) + 1);
  expect([...perTask.values()].every((n) => n === 1), `no task of ${id} finished twice`).toBe(true);
  expect(node.json.revision, `view revision of ${id} is its last event's`).toBe(items[items.length - 1].revision);
  expect(node.headers.get('etag')).toBe(`"${node.json.revision}"`);
  return items;
}
