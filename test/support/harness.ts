/**
 * An Ironclad for API tests: real fastify (inject), real SQLite read models (`:memory:`), the
 * in-memory event store, and a fake clock so driver delays, deadlines and timers move only
 * when the test says so. Nothing sleeps: tests advance the clock and wait on conditions.
 */
import Database from 'better-sqlite3';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config.js';
import { createIronclad, type Ironclad } from '../../src/main.js';
import { createMemoryEventStore } from '../../src/adapters/memory/event-store.js';
import { createMemorySnapshotStore } from '../../src/adapters/memory/snapshot-store.js';
import type { Driver } from '../../src/ports/driver.js';
import type { ResourceWorker } from '../../src/app/stacks/resource-worker.js';
import type { EventStore } from '../../src/ports/event-store.js';
import { createFakeClock, createSequentialIds, type FakeClock } from './fake-clock.js';
import { waitFor } from './wait-for.js';

export interface Harness {
  ic: Ironclad;
  /** Closes this Ironclad and starts a new one on the same data (only with `persistent: true`). */
  restart(): Promise<void>;
  clock: FakeClock;
  store: EventStore;
  logs: string[];
  req(opts: InjectOptions & { token?: string }): Promise<LightMyRequestResponse>;
  /** Enrolls a fake node and returns its id. */
  enroll(body?: Record<string, unknown>, token?: string): Promise<string>;
  /** PUT provision target; returns the response. */
  provision(id: string, target: string, extra?: Record<string, unknown>, token?: string): Promise<LightMyRequestResponse>;
  node(id: string, token?: string): Promise<Record<string, any>>;
  task(id: string, token?: string): Promise<Record<string, any>>;
  /** Advances the fake clock step by step until the node reaches `state` (or fails the test). */
  driveUntil(id: string, state: string, opts?: { stepMs?: number; maxSteps?: number; token?: string }): Promise<Record<string, any>>;
  /** Waits until the read models caught up with the store's head. */
  settle(): Promise<void>;
  /** POST /v1/stacks (a test-resource template by default); returns the response. */
  createStack(body: Record<string, unknown>, token?: string): Promise<LightMyRequestResponse>;
  /** GET /v1/stacks/{id} after the read models settled (fails the test on a non-200). */
  stack(idOrName: string, token?: string): Promise<Record<string, any>>;
  /** Advances the fake clock step by step until the task is terminal; returns it. */
  finishTask(taskId: string, opts?: { stepMs?: number; maxSteps?: number; token?: string }): Promise<Record<string, any>>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  store?: EventStore;
  persistent?: boolean;
  /** Replaces the default drivers (e.g. an ipmi driver tuned for tests); given the harness clock. */
  drivers?: (clock: FakeClock) => Record<string, Driver>;
  /** Stack resource workers replacing the defaults of the same type; given the harness clock. */
  resourceWorkers?: (clock: FakeClock) => ResourceWorker[];
}

export async function createHarness(env: Record<string, string> = {}, opts: HarnessOptions = {}): Promise<Harness> {
  const clock = createFakeClock();
  const logs: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { logs.push(String(chunk)); cb(); } });
  const logger = pino({ level: 'debug' }, sink);
  const config = parseConfig({ IRONCLAD_DATA_DIR: mkdtempSync(join(tmpdir(), 'ironclad-api-')), IRONCLAD_POWER_SYNC_S: '0', IRONCLAD_SHED_EVENT_LOOP_DELAY_MS: '0', ...env });
  const ids = createUuidLike();
  const drivers = opts.drivers?.(clock);
  const resourceWorkers = opts.resourceWorkers?.(clock);
  // persistent: the embedded SQLite store in a temp data dir, so restart() finds everything again.
  const boot = async (): Promise<Ironclad> => {
    const started = opts.persistent
      ? await createIronclad({ config, clock, ids, drivers, resourceWorkers, logger: logger as never })
      : await createIronclad({
          config, store: opts.store ?? createMemoryEventStore(), snapshots: createMemorySnapshotStore(), db: new Database(':memory:'),
          clock, ids, drivers, resourceWorkers, logger: logger as never,
        });
    await started.start();
    return started;
  };
  let ic = await boot();

  const req: Harness['req'] = (o) => {
    const { token, ...rest } = o;
    const headers = { ...(rest.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) };
    return ic.app.inject({ ...rest, headers });
  };
  const settle = async (): Promise<void> => {
    const head = await ic.store.headPosition();
    if (head !== null) await waitFor(() => (ic.internals['projector'] as { isCaughtUp(p: string): boolean }).isCaughtUp(head), 5000);
  };
  const node = async (id: string, token?: string): Promise<Record<string, any>> => {
    await settle();
    const r = await req({ method: 'GET', url: `/v1/nodes/${id}`, token });
    if (r.statusCode !== 200) throw new Error(`GET node ${id}: ${r.statusCode} ${r.body}`);
    return r.json();
  };
  const h: Harness = {
    get ic() { return ic; },
    get store() { return ic.store; },
    clock, logs, req, settle, node,
    async restart() {
      if (!opts.persistent) throw new Error('restart() needs createHarness(env, { persistent: true })');
      await ic.close();
      ic = await boot();
    },
    async enroll(body = {}, token) {
      const r = await req({ method: 'POST', url: '/v1/nodes', payload: { driver: 'fake', resource_class: 'baremetal', ...body }, token });
      if (r.statusCode !== 201) throw new Error(`enroll: ${r.statusCode} ${r.body}`);
      return r.json().id as string;
    },
    provision: (id, target, extra = {}, token) => req({ method: 'PUT', url: `/v1/nodes/${id}/states/provision`, payload: { target, ...extra }, token }),
    async task(id, token) {
      await settle();
      const r = await req({ method: 'GET', url: `/v1/tasks/${id}`, token });
      if (r.statusCode !== 200 && r.statusCode !== 202) throw new Error(`GET task ${id}: ${r.statusCode} ${r.body}`);
      return r.json();
    },
    async driveUntil(id, state, o = {}) {
      const step = o.stepMs ?? 25;
      for (let i = 0; i < (o.maxSteps ?? 400); i++) {
        const n = await node(id, o.token);
        if (n['provision_state'] === state && n['current_task'] === null) return n;
        clock.advance(step);
        await new Promise((r) => setImmediate(r));
      }
      const n = await node(id, o.token);
      throw new Error(`node ${id} did not reach "${state}"; it is in "${n['provision_state']}" (task ${JSON.stringify(n['current_task'])}, last_error ${n['last_error']})`);
    },
    createStack: (body, token) => req({ method: 'POST', url: '/v1/stacks', payload: body, token }),
    async stack(idOrName, token) {
      await settle();
      const r = await req({ method: 'GET', url: `/v1/stacks/${idOrName}`, token });
      if (r.statusCode !== 200) throw new Error(`GET stack ${idOrName}: ${r.statusCode} ${r.body}`);
      return r.json();
    },
    async finishTask(taskId, o = {}) {
      for (let i = 0; i < (o.maxSteps ?? 400); i++) {
        const t = await h.task(taskId, o.token);
        if (['succeeded', 'failed', 'cancelled'].includes(t['state'])) return t;
        clock.advance(o.stepMs ?? 25);
        await new Promise((r) => setImmediate(r));
      }
      throw new Error(`task ${taskId} did not finish: ${JSON.stringify(await h.task(taskId, o.token))}`);
    },
    close: () => ic.close(),
  };
  return h;
}

/** Deterministic uuid-shaped ids (the API resolves uuids as ids, anything else as names). */
function createUuidLike() {
  const seq = createSequentialIds();
  return { next: () => { const n = seq.next().replace(/\D/g, '').padStart(12, '0'); return `00000000-0000-4000-8000-${n.slice(-12)}`; } };
}
