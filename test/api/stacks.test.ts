import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';
import { actionLog, expectBefore, physicalIds, STACK_ENV, testTemplate } from '../support/stack-api.js';

describe('stacks through the API (test resources, fake clock)', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness(STACK_ENV);
  });
  afterEach(async () => h.close());

  async function createAndFinish(name: string, template: unknown, extra: Record<string, unknown> = {}) {
    const r = await h.createStack({ name, template, ...extra });
    expect(r.statusCode, r.body).toBe(202);
    const { stack, task } = r.json();
    expect(r.headers['location']).toBe(`/v1/tasks/${task.id}`);
    expect(task).toMatchObject({ action: 'create', resource_type: 'stack', resource_id: stack.id, state: 'running' });
    const done = await h.finishTask(task.id);
    return { id: stack.id as string, task: done };
  }

  const graphs: Record<string, { resources: Record<string, Record<string, unknown>>; edges: [string, string][] }> = {
    linear: {
      resources: { a: { value: 1 }, b: { value: { get_attr: ['a', 'output'] } }, c: { value: { get_resource: 'b' } } },
      edges: [['a', 'b'], ['b', 'c']],
    },
    diamond: {
      resources: { top: {}, left: { depends_on: ['top'] }, right: { value: { get_resource: 'top' } }, bottom: { depends_on: ['left', 'right'] } },
      edges: [['top', 'left'], ['top', 'right'], ['left', 'bottom'], ['right', 'bottom']],
    },
    disjoint: {
      resources: { a1: {}, a2: { depends_on: ['a1'] }, b1: {}, b2: { depends_on: ['b1'] } },
      edges: [['a1', 'a2'], ['b1', 'b2']],
    },
  };

  for (const [kind, g] of Object.entries(graphs)) {
    it(`creates a ${kind} graph in dependency order and deletes it in reverse`, async () => {
      const { id, task } = await createAndFinish(`s-${kind}`, testTemplate(g.resources));
      expect(task.state).toBe('succeeded');
      const s = await h.stack(id);
      expect(s.status).toBe('CREATE_COMPLETE');
      expect(s.resources.map((r: any) => r.name).sort()).toEqual(Object.keys(g.resources).sort());
      for (const r of s.resources) expect(r).toMatchObject({ status: 'CREATE_COMPLETE', physical_id: expect.stringMatching(/^test-/) });
      let log = await actionLog(h, id);
      for (const [a, b] of g.edges) expectBefore(log, 'CREATE', a, b);

      const del = await h.req({ method: 'DELETE', url: `/v1/stacks/${id}` });
      expect(del.statusCode, del.body).toBe(202);
      expect(del.json()).toMatchObject({ action: 'delete', resource_type: 'stack', resource_id: id });
      expect((await h.finishTask(del.json().id)).state).toBe('succeeded');
      log = await actionLog(h, id);
      for (const [a, b] of g.edges) expectBefore(log, 'DELETE', b, a);
      const gone = await h.stack(id);
      expect(gone).toMatchObject({ status: 'DELETE_COMPLETE', resources: [], allowed_actions: [] });
    });
  }

  it('resolves references and outputs, by id and by name', async () => {
    const { id } = await createAndFinish('refs', testTemplate(
      { a: { value: 'hello' }, b: { value: { list: [{ get_attr: ['a', 'output'] }, { get_resource: 'a' }] } } },
      { b_out: { get_attr: ['b', 'output'] }, a_id: { get_resource: 'a' } },
    ));
    const s = await h.stack('refs');
    expect(s.id).toBe(id);
    const ids = physicalIds(s);
    expect(s.outputs).toEqual({ a_id: ids['a'], b_out: { list: ['hello', ids['a']] } });
    expect(s.resources.find((r: any) => r.name === 'b')).toMatchObject({ requires: ['a'], attributes: { output: { list: ['hello', ids['a']] } } });
  });

  it('updates in place keeping physical ids, and replaces (create before delete) when replace_key changes', async () => {
    const { id } = await createAndFinish('upd', testTemplate({ db: { value: 1, replace_key: 'v1' }, app: { value: { get_resource: 'db' } } }));
    const before = physicalIds(await h.stack(id));

    let r = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, payload: { template: testTemplate({ db: { value: 2, replace_key: 'v1' }, app: { value: { get_resource: 'db' } } }) } });
    expect(r.statusCode, r.body).toBe(202);
    expect((await h.finishTask(r.json().id)).state).toBe('succeeded');
    let s = await h.stack(id);
    expect(s.status).toBe('UPDATE_COMPLETE');
    expect(physicalIds(s)).toEqual(before);
    expect(s.resources.find((x: any) => x.name === 'db')).toMatchObject({ status: 'UPDATE_COMPLETE', attributes: { output: 2 } });

    r = await h.req({ method: 'PUT', url: `/v1/stacks/${id}`, payload: { template: testTemplate({ db: { value: 2, replace_key: 'v2' }, app: { value: { get_resource: 'db' } } }) } });
    expect((await h.finishTask(r.json().id)).state).toBe('succeeded');
    s = await h.stack(id);
    const after = physicalIds(s);
    expect(after['db']).not.toBe(before['db']);
    expect(after['app']).toBe(before['app']); // app is updated in place to point at the new db
    expect(s.resources).toHaveLength(2);
    expect(s.resources.find((x: any) => x.name === 'app').attributes).toEqual({ output: after['db'] });
    const log = await actionLog(h, id);
    const createNew = log.findIndex((x) => x.event === 'completed' && x.action === 'CREATE' && x.physical_id === after['db']);
    const appMoved = log.findIndex((x) => x.event === 'completed' && x.action === 'UPDATE' && x.name === 'app' && log.indexOf(x) > createNew);
    const deleteOld = log.findIndex((x) => x.event === 'started' && x.action === 'DELETE' && x.physical_id === before['db']);
    expect(createNew).toBeGreaterThanOrEqual(0);
    expect(appMoved, 'the dependent moved to the new db').toBeGreaterThan(createNew);
    expect(deleteOld, 'the old db is deleted only after its dependent moved').toBeGreaterThan(appMoved);
  });

  it('accepts a YAML template string and a YAML request body', async () => {
    const yamlTemplate = `resources:\n  a:\n    type: ironclad::test::resource\n    properties: {value: 7}\n  b:\n    type: ironclad::test::resource\n    properties:\n      value: {get_attr: [a, output]}\n`;
    const { id } = await createAndFinish('yaml-string', yamlTemplate);
    expect((await h.stack(id)).resources.find((r: any) => r.name === 'b').attributes).toEqual({ output: 7 });

    const body = `name: yaml-body\ntimeout_s: 60\ntemplate:\n${yamlTemplate.split('\n').map((l) => `  ${l}`).join('\n')}`;
    const r = await h.req({ method: 'POST', url: '/v1/stacks', payload: body, headers: { 'content-type': 'application/yaml' } });
    expect(r.statusCode, r.body).toBe(202);
    expect(r.json().stack).toMatchObject({ name: 'yaml-body', timeout_s: 60, status: 'CREATE_IN_PROGRESS' });
    expect((await h.finishTask(r.json().task.id)).state).toBe('succeeded');
  });

  it('lists stacks, hides deleted ones unless asked, and reuses a deleted stack\'s name', async () => {
    const { id } = await createAndFinish('reuse', testTemplate({ a: {} }));
    await createAndFinish('other', testTemplate({ a: {} }));
    const del = await h.req({ method: 'DELETE', url: `/v1/stacks/${id}` });
    await h.finishTask(del.json().id);
    await h.settle();
    let list = await h.req({ method: 'GET', url: '/v1/stacks' });
    expect(list.json().items.map((s: any) => s.name)).toEqual(['other']);
    list = await h.req({ method: 'GET', url: '/v1/stacks?show_deleted=true' });
    expect(list.json().items.map((s: any) => s.name).sort()).toEqual(['other', 'reuse']);
    const again = await createAndFinish('reuse', testTemplate({ a: {} }));
    expect(again.id).not.toBe(id);
    expect((await h.stack('reuse')).id).toBe(again.id); // the live one wins
    expect((await h.stack(id)).status).toBe('DELETE_COMPLETE');
  });

  it('describes the stack machine', async () => {
    const r = await h.req({ method: 'GET', url: '/v1/machines/stack' });
    expect(r.statusCode).toBe(200);
    const m = r.json();
    expect(m.states).toHaveLength(13);
    expect(m.states).toContainEqual({ name: 'DELETE_COMPLETE', stable: true });
    expect(m.transitions).toContainEqual({ from: 'CREATE_IN_PROGRESS', event: 'update', to: 'UPDATE_IN_PROGRESS' });
    expect(m.api_verbs).toMatchObject({ cancel_update: 'cancel', rollback: 'rollback' });
  });

  it('history/{revision} replays the stack to that event', async () => {
    const { id } = await createAndFinish('hist', testTemplate({ a: {}, b: { depends_on: ['a'] } }));
    const hist = (await h.req({ method: 'GET', url: `/v1/stacks/${id}/history?limit=1000` })).json().items;
    expect(hist[0]).toMatchObject({ type: 'StackCreateRequested', entity_type: 'stack', entity_id: id, revision: 0 });
    const started = hist.find((e: any) => e.type === 'TraversalStarted');
    const r = await h.req({ method: 'GET', url: `/v1/stacks/${id}/history/${started.revision}` });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ revision: started.revision, event: { type: 'TraversalStarted' }, state: { status: 'CREATE_IN_PROGRESS' } });
    const last = hist[hist.length - 1];
    expect((await h.req({ method: 'GET', url: `/v1/stacks/${id}/history/${last.revision}` })).json().state.status).toBe('CREATE_COMPLETE');
  });

  it('documents every stack route in the OpenAPI document', async () => {
    const r = await h.req({ method: 'GET', url: '/openapi.json' });
    expect(r.statusCode).toBe(200);
    const paths = r.json().paths;
    expect(Object.keys(paths).filter((p) => p.startsWith('/v1/stacks')).sort()).toEqual([
      '/v1/stacks', '/v1/stacks/{id}', '/v1/stacks/{id}/actions', '/v1/stacks/{id}/history', '/v1/stacks/{id}/history/{revision}',
      '/v1/stacks/{id}/resources/{name}/signal',
    ]);
    expect(Object.keys(paths['/v1/stacks/{id}'])).toEqual(expect.arrayContaining(['get', 'put', 'delete']));
    expect(paths['/v1/stacks'].post.description).toContain('application/yaml');
    expect(r.json().components.schemas).toHaveProperty('Stack');
  });

  it('a wide fan-in (200 resources on one) is created after its root and deleted before it', async () => {
    const resources: Record<string, Record<string, unknown>> = { root: { value: 'r' } };
    for (let i = 0; i < 200; i++) resources[`leaf${i}`] = { value: { get_attr: ['root', 'output'] } };
    const { id, task } = await createAndFinish('wide', testTemplate(resources));
    expect(task.state).toBe('succeeded');
    const s = await h.stack(id);
    expect(s.resources).toHaveLength(201);
    expect(s.resources.every((r: any) => r.status === 'CREATE_COMPLETE')).toBe(true);
    expect(s.resources.filter((r: any) => r.name !== 'root').every((r: any) => r.attributes.output === 'r')).toBe(true);
    const del = await h.req({ method: 'DELETE', url: `/v1/stacks/${id}` });
    expect((await h.finishTask(del.json().id)).state).toBe('succeeded');
    const log = await actionLog(h, id);
    const rootDelete = log.findIndex((x) => x.event === 'started' && x.action === 'DELETE' && x.name === 'root');
    const leafDeletes = log.filter((x, i) => x.event === 'completed' && x.action === 'DELETE' && x.name !== 'root' && i < rootDelete);
    expect(leafDeletes).toHaveLength(200);
  });
});
