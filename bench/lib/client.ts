/**
 * The bench's own HTTP client for set-up and checks (not the load generator): undici Pool with
 * keep-alive, JSON in and out, and the steps a user takes (enroll, provision verbs, long-poll tasks).
 */
import { Pool } from 'undici';

export interface Res<T = any> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  json: T;
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

/** Zero delays for every fake operation, unless overridden. */
export function fakeInfo(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const info: Record<string, unknown> = {};
  for (const op of ['verify', 'inspect', 'deploy', 'clean', 'teardown', 'rescue', 'unrescue', 'adopt', 'service', 'power']) info[`fake_${op}_ms`] = 0;
  return { ...info, ...extra };
}

export class Client {
  readonly pool: Pool;
  constructor(readonly baseUrl: string, connections = 64) {
    this.pool = new Pool(baseUrl, { connections, pipelining: 1, keepAliveTimeout: 60_000, headersTimeout: 120_000, bodyTimeout: 120_000 });
  }

  /** 503 `overloaded` answers (load shedding) retried by `req` after their Retry-After. */
  shedRetries = 0;

  /**
   * One request; a 503 `overloaded` (refused before anything ran) is retried after its Retry-After,
   * as a well-behaved client does, up to 120 times.
   */
  async req<T = any>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Res<T>> {
    for (let attempt = 0; ; attempt++) {
      const r = await this.once<T>(method, path, body, headers);
      if (r.status !== 503 || (r.json as { code?: string } | null)?.code !== 'overloaded' || attempt >= 120) return r;
      this.shedRetries++;
      await new Promise((res) => setTimeout(res, Math.min(5, Number(r.headers['retry-after'] ?? 1)) * 1000 * (0.5 + Math.random() / 2)));
    }
  }

  private async once<T>(method: string, path: string, body: unknown, headers: Record<string, string>): Promise<Res<T>> {
    const r = await this.pool.request({
      method: method as 'GET', path,
      headers: body !== undefined ? { 'content-type': 'application/json', ...headers } : headers,
      body: body !== undefined ? JSON.stringify(body) : null,
    });
    const text = await r.body.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = text;
    }
    return { status: r.statusCode, headers: r.headers, json };
  }

  async enroll(driverInfo: Record<string, unknown>): Promise<string> {
    const r = await this.req('POST', '/v1/nodes', { driver: 'fake', resource_class: 'baremetal', driver_info: driverInfo });
    if (r.status !== 201) throw new Error(`enroll: ${r.status} ${JSON.stringify(r.json)}`);
    return r.json.id as string;
  }

  /** PUT a provision verb; returns the task id and the position of the append. */
  async provision(id: string, target: string): Promise<{ task: string; position: string }> {
    const r = await this.req('PUT', `/v1/nodes/${id}/states/provision`, { target });
    if (r.status !== 202) throw new Error(`${target} on ${id}: ${r.status} ${JSON.stringify(r.json)}`);
    return { task: r.json.id as string, position: String(r.headers['ironclad-position'] ?? '') };
  }

  /** Long-polls the task (Prefer: wait, read-your-writes) until terminal; returns its state. */
  async awaitTask(a: { task: string; position: string }, timeoutMs = 300_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const h: Record<string, string> = { prefer: 'wait=60' };
      if (a.position) h['ironclad-position'] = a.position;
      const r = await this.req('GET', `/v1/tasks/${a.task}`, undefined, h);
      if (r.status === 200 && TERMINAL.has(r.json.state)) return r.json.state as string;
      if (r.status !== 202 && r.status !== 503) throw new Error(`task ${a.task}: ${r.status} ${JSON.stringify(r.json)}`);
    }
    throw new Error(`task ${a.task} not terminal after ${timeoutMs} ms`);
  }

  /** Runs the verbs in order, each to success. */
  async drive(id: string, verbs: string[]): Promise<void> {
    for (const v of verbs) {
      const state = await this.awaitTask(await this.provision(id, v));
      if (state !== 'succeeded') throw new Error(`${v} on ${id} ended ${state}`);
    }
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Runs fn over items with at most `limit` in flight. */
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

/** Enrolls `n` fake nodes and drives them through `verbs`; returns ids and the time it took. */
export async function buildFleet(c: Client, n: number, verbs: string[], info = fakeInfo(), concurrency = 64): Promise<{ ids: string[]; ms: number }> {
  const t0 = performance.now();
  const ids = await mapLimit(Array.from({ length: n }), concurrency, async () => {
    const id = await c.enroll(info);
    await c.drive(id, verbs);
    return id;
  });
  return { ids, ms: performance.now() - t0 };
}
