/**
 * "Under any worker scheduling": the stack conductor runs a worker that holds every action until
 * the test releases it; each seed releases them in a different order (and lets a newer request
 * arrive at a different point). Every schedule must reach the same end state, leak nothing and
 * never delete a resource something live still refers to.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ResourceActionFailed, type ResourceOutputs, type ResourceWorker } from '../../src/app/stacks/resource-worker.js';
import type { StackWorkOrder } from '../../src/domain/stack/work.js';
import { createHarness, type Harness } from '../support/harness.js';
import { actionLog, expectBefore, STACK_ENV, TEST_TYPE, testTemplate } from '../support/stack-api.js';
import { rng } from '../support/stack-sim.js';
import { waitFor } from '../support/wait-for.js';

/** A test-resource worker whose every action waits for `release`; keeps the world it built. */
function createGateWorker() {
  const waiting: { order: StackWorkOrder; release: () => void }[] = [];
  const world = new Map<string, { name: string; properties: Record<string, unknown> }>();
  let n = 0;
  const worker: ResourceWorker = {
    type: TEST_TYPE,
    run(order, ctx) {
      return new Promise<ResourceOutputs>((resolve, reject) => {
        ctx.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
        waiting.push({
          order,
          release: () => {
            const p = order.properties;
            if (Array.isArray(p['fail_on']) && p['fail_on'].includes(order.action.toLowerCase())) {
              return reject(new ResourceActionFailed('resource_failed', `${order.name} refused`));
            }
            if (order.action === 'DELETE') {
              const refs = [...world.entries()].filter(([id, r]) => id !== order.physical_id && JSON.stringify(r.properties).includes(`"${order.physical_id}"`));
              expect(refs.map(([, r]) => r.name), `nothing live refers to ${order.name} (${order.physical_id}) when it is deleted`).toEqual([]);
              world.delete(order.physical_id!);
              return resolve(null);
            }
            const id = order.action === 'CREATE' ? `gate-${++n}` : order.physical_id!;
            world.set(id, { name: order.name, properties: p });
            resolve({ physical_id: id, attributes: { output: p['value'] ?? null } });
          },
        });
      });
    },
  };
  return { worker, waiting, world };
}

const T1 = testTemplate({
  net: { value: 'n1' },
  sub: { value: { get_resource: 'net' }, replace_key: 1 },
  left: { value: { get_attr: ['sub', 'output'] } },
  right: { value: { get_resource: 'sub' } },
  app: { value: [{ get_resource: 'left' }, { get_resource: 'right' }], depends_on: ['net'] },
  lone: { value: 'x' },
}, { app: { get_attr: ['app', 'output'] } });

// sub is replaced (replace_key), left updated in place, lone removed, extra added.
const T2 = testTemplate({
  net: { value: 'n1' },
  sub: { value: { get_resource: 'net' }, replace_key: 2 },
  left: { value: { list: [{ get_attr: ['sub', 'output'] }] } },
  right: { value: { get_resource: 'sub' } },
  app: { value: [{ get_resource: 'left' }, { get_resource: 'right' }], depends_on: ['net'] },
  extra: { value: { get_resource: 'app' } },
}, { app: { get_attr: ['app', 'output'] } });

describe('stacks under any worker scheduling', () => {
  let h: Harness | null = null;
  afterEach(async () => {
    await h?.close();
    h = null;
  });

  /** Physical ids replaced by the names of the resources they belong to, so schedules compare. */
  interface Normalised {
    status: string;
    resources: { name: string; status: string; output: unknown; requires: string[] }[];
    outputs: unknown;
  }
  function normalised(stack: Record<string, any>): Normalised {
    const names = new Map<string, string>(stack['resources'].map((r: any) => [r.physical_id, r.name]));
    const swap = (v: unknown): unknown => JSON.parse(JSON.stringify(v ?? null), (_k, x) => (typeof x === 'string' && names.has(x) ? `<${names.get(x)}>` : x));
    return {
      status: stack['status'],
      resources: stack['resources'].map((r: any) => ({ name: r.name, status: r.status, output: swap(r.attributes.output), requires: r.requires })).sort((a: any, b: any) => a.name.localeCompare(b.name)),
      outputs: swap(stack['outputs']),
    };
  }

  async function scenario(seed: number) {
    const gate = createGateWorker();
    h = await createHarness(STACK_ENV, { resourceWorkers: () => [gate.worker] });
    const random = rng(seed);
    const terminal = async (taskId: string) => ['succeeded', 'failed', 'cancelled'].includes((await h!.task(taskId)).state);
    /** Releases held actions in random order until the task is terminal (or `max` releases). */
    const drive = async (taskId: string, max = Infinity) => {
      for (let released = 0; released < max; released++) {
        await waitFor(async () => gate.waiting.length > 0 || (await terminal(taskId)), { what: `work or the end of task ${taskId}` });
        if (await terminal(taskId)) return;
        await h!.settle(); // every order dispatched so far is waiting: choose among all of them
        const [w] = gate.waiting.splice(Math.floor(random() * gate.waiting.length), 1);
        w!.release();
      }
    };

    const c = await h.createStack({ name: 'sched', template: T1 });
    expect(c.statusCode, c.body).toBe(202);
    const id = c.json().stack.id as string;
    // The update arrives after a seed-dependent number of releases: during the create, or after it.
    await drive(c.json().task.id, Math.floor(random() * 8));
    const u = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, payload: { template: T2 } });
    expect(u.statusCode, u.body).toBe(202);
    await drive(u.json().id);
    expect((await h.task(u.json().id)).state).toBe('succeeded');
    const converged = await h.stack(id);
    expect([...gate.world.keys()].sort(), 'the world holds exactly the stack\'s resources').toEqual(converged.resources.map((r: any) => r.physical_id).sort());

    const before = (await actionLog(h, id)).length;
    const d = await h.req({ method: 'DELETE', url: `/v1/stacks/${id}` });
    await drive(d.json().id);
    expect((await h.task(d.json().id)).state).toBe('succeeded');
    expect(gate.world.size).toBe(0);
    const deleteLog = (await actionLog(h, id)).slice(before);
    for (const [a, b] of [['net', 'sub'], ['net', 'app'], ['sub', 'left'], ['sub', 'right'], ['left', 'app'], ['right', 'app'], ['app', 'extra']]) {
      expectBefore(deleteLog, 'DELETE', b!, a!);
    }
    const result = { ...normalised(converged), create: (await h.task(c.json().task.id)).state as string };
    await h.close();
    h = null;
    return result;
  }

  it('reaches the same end state for every release order', async () => {
    const results: (Normalised & { create: string })[] = [];
    for (const seed of [1, 2, 3, 4, 5, 6]) results.push(await scenario(seed));
    expect(results[0]).toMatchObject({
      status: 'UPDATE_COMPLETE',
      outputs: { app: ['<left>', '<right>'] },
    });
    expect(results[0]!.resources.map((r) => r.name)).toEqual(['app', 'extra', 'left', 'net', 'right', 'sub']);
    expect(results[0]!.resources.find((r) => r.name === 'left')!.output).toEqual({ list: ['<net>'] });
    expect(results[0]!.resources.find((r) => r.name === 'right')!.output).toBe('<sub>');
    // Some seeds updated during the create (superseded → cancelled), others after it.
    expect(new Set(results.map((r) => r.create))).toEqual(new Set(['cancelled', 'succeeded']));
    const comparable = results.map(({ create: _c, ...r }) => ({ ...r, resources: r.resources.map(({ status: _s, ...rest }) => rest) }));
    for (const r of comparable.slice(1)) expect(r).toEqual(comparable[0]);
  });
});
