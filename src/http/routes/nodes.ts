/** Node routes (api.md "Nodes"). Handlers validate with zod, call a use case, shape the answer. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isApiVerb, API_VERBS } from '../../../machines/node/node.model.js';
import { errors, IroncladError } from '../../domain/errors.js';
import { canSee } from '../../domain/principal.js';
import { nodeView } from '../../app/nodes/node-view.js';
import { eventEnvelope, replayNode } from '../../app/nodes/replay.js';
import { streamName } from '../../runtime/actor-runtime.js';
import type { HttpDeps } from '../context.js';
import { checkCallbackUrl, meta, runAdmitted, sendTask } from '../helpers.js';
import {
  CreateNodeBody, EventEnvelope, HeartbeatBody, HistoryQuery, IdParams, MaintenanceBody, Node, NodeListQuery, page, PatchNodeBody,
  PowerBody, Problem, ProvisionBody, ReadQuery, RevisionParams, Task,
  commonErrors, WRITE_CONVENTIONS,
} from '../schemas.js';
import { caughtUp } from './read-your-writes.js';

const errs = commonErrors;
const tags = ['nodes'];

function ifMatch(req: FastifyRequest): number | null {
  const h = req.headers['if-match'];
  if (typeof h !== 'string') return null;
  const m = /^(?:W\/)?"?(\d+)"?$/.exec(h.trim());
  if (!m) throw errors.validation([{ path: 'header.if-match', message: 'must be an ETag "<revision>"' }]);
  return Number(m[1]);
}

export async function nodeRoutes(scope: FastifyInstance, deps: HttpDeps): Promise<void> {
  const app = scope.withTypeProvider<ZodTypeProvider>();
  const svc = deps.nodes;

  app.post('/v1/nodes', { schema: { tags, summary: 'Enroll a node', description: WRITE_CONVENTIONS, body: CreateNodeBody, response: { 201: Node, ...errs } } }, async (req, reply) => {
    const b = req.body;
    const out = await svc.enroll(req.principal, {
      name: b.name ?? null, driver: b.driver, driver_info: b.driver_info, resource_class: b.resource_class,
      properties: b.properties ?? {}, traits: b.traits ?? [], ...(b.owner !== undefined ? { owner: b.owner } : {}),
    }, meta(req));
    reply.header('Location', `/v1/nodes/${out.state.id}`).header('ETag', `"${out.state.revision}"`);
    if (out.position) reply.header('Ironclad-Position', out.position);
    return reply.code(201).send(nodeView(out.state));
  });

  app.get('/v1/nodes', { schema: { tags, summary: 'List nodes', querystring: NodeListQuery, response: { 200: page(Node), ...errs } } }, async (req) => {
    await caughtUp(deps, req, req.query.min_position);
    const q = req.query;
    const p = req.principal;
    const owner = p.role === 'admin' ? q.owner : q.owner !== undefined && q.owner !== p.tenant ? '\u0000none' : p.tenant;
    const res = deps.nodesRM.list({
      owner, provision_state: q.provision_state, resource_class: q.resource_class, maintenance: q.maintenance, name: q.name, has_pending: q.has_pending,
    }, q.limit, q.cursor ?? null);
    return { items: res.items.map(nodeView), next_cursor: res.next_cursor };
  });

  app.get('/v1/nodes/:id', { schema: { tags, summary: 'Show a node', params: IdParams, querystring: ReadQuery, response: { 200: Node, ...errs } } }, async (req, reply) => {
    await caughtUp(deps, req, req.query.min_position);
    const s = await svc.resolve(req.principal, req.params.id);
    reply.header('ETag', `"${s.revision}"`);
    return nodeView(s);
  });

  app.patch('/v1/nodes/:id', { schema: { tags, summary: 'Change a node (JSON merge patch)', description: WRITE_CONVENTIONS, params: IdParams, body: PatchNodeBody, response: { 200: Node, 412: Problem, ...errs } } }, async (req, reply) => {
    const b = req.body;
    const current = await svc.resolve(req.principal, req.params.id);
    const changes: Record<string, unknown> = {};
    if (b.name !== undefined) changes['name'] = b.name;
    if (b.resource_class !== undefined) changes['resource_class'] = b.resource_class;
    if (b.traits !== undefined) changes['traits'] = b.traits;
    if (b.properties !== undefined) changes['properties'] = mergePatch(current.properties, b.properties);
    if (b.driver_info !== undefined) changes['driver_info'] = mergePatch(current.driver_info, b.driver_info);
    const out = await svc.update(req.principal, current.id, changes, ifMatch(req), meta(req));
    reply.header('ETag', `"${out.state.revision}"`);
    if (out.position) reply.header('Ironclad-Position', out.position);
    return nodeView(out.state);
  });

  app.delete('/v1/nodes/:id', { schema: { tags, summary: 'Delete a node record', description: WRITE_CONVENTIONS, params: IdParams, response: { ...errs } } }, async (req, reply) => {
    const out = await svc.remove(req.principal, req.params.id, meta(req));
    if (out.position) reply.header('Ironclad-Position', out.position);
    return reply.code(204).send(undefined as never);
  });

  app.put('/v1/nodes/:id/states/provision', { schema: { tags, summary: 'Request a provision action', description: WRITE_CONVENTIONS, params: IdParams, body: ProvisionBody, response: { 200: Task, 202: Task, ...errs } } }, async (req, reply) => {
    const { target, on_busy, callback_url, ...params } = req.body;
    if (!isApiVerb(target)) throw errors.unknownAction(target, Object.keys(API_VERBS));
    await checkCallbackUrl(deps, callback_url);
    const out = await runAdmitted(deps, () => svc.command(req.principal, req.params.id, {
      type: 'RequestProvision', verb: target, params, on_busy: on_busy ?? 'reject', callback_url: callback_url ?? null, task_id: deps.ids.next(),
    }, meta(req)));
    return sendTask(deps, req, reply, out.task!, { coalesced: out.coalesced, position: out.position });
  });

  app.put('/v1/nodes/:id/states/power', { schema: { tags, summary: 'Request a power action', description: WRITE_CONVENTIONS, params: IdParams, body: PowerBody, response: { 200: Task, 202: Task, ...errs } } }, async (req, reply) => {
    const b = req.body;
    await checkCallbackUrl(deps, b.callback_url);
    const out = await runAdmitted(deps, () => svc.command(req.principal, req.params.id, {
      type: 'RequestPower', target: b.target, timeout_s: b.timeout ?? null, on_busy: b.on_busy ?? 'reject', callback_url: b.callback_url ?? null, task_id: deps.ids.next(),
    }, meta(req)));
    return sendTask(deps, req, reply, out.task!, { coalesced: out.coalesced, position: out.position });
  });

  app.put('/v1/nodes/:id/maintenance', { schema: { tags, summary: 'Put a node into maintenance', description: WRITE_CONVENTIONS, params: IdParams, body: MaintenanceBody.nullish(), response: { 200: Node, ...errs } } }, async (req, reply) => {
    const out = await svc.command(req.principal, req.params.id, { type: 'SetMaintenance', reason: req.body?.reason ?? null }, meta(req));
    if (out.position) reply.header('Ironclad-Position', out.position);
    return nodeView(out.state);
  });

  app.delete('/v1/nodes/:id/maintenance', { schema: { tags, summary: 'Take a node out of maintenance', description: WRITE_CONVENTIONS, params: IdParams, response: { 200: Node, ...errs } } }, async (req, reply) => {
    const out = await svc.command(req.principal, req.params.id, { type: 'UnsetMaintenance' }, meta(req));
    if (out.position) reply.header('Ironclad-Position', out.position);
    return nodeView(out.state);
  });

  app.get('/v1/nodes/:id/history', { schema: { tags, summary: "A node's events", params: IdParams, querystring: HistoryQuery, response: { 200: page(EventEnvelope), ...errs } } }, async (req) => {
    await caughtUp(deps, req, req.query.min_position);
    const id = await visibleNodeId(deps, req, req.params.id);
    const events = await deps.store.readStream(streamName('node', id), { fromRevision: req.query.from_revision, limit: req.query.limit + 1 });
    const items = events.slice(0, req.query.limit).map(eventEnvelope);
    return { items, next_cursor: events.length > req.query.limit ? String(events[req.query.limit]!.revision) : null };
  });

  app.get('/v1/nodes/:id/history/:revision', { schema: { tags, summary: 'The node as it was right after one event (replayed)', params: RevisionParams, querystring: ReadQuery, response: { 200: z.object({ revision: z.number(), event: EventEnvelope, state: Node }), ...errs } } }, async (req) => {
    await caughtUp(deps, req, req.query.min_position);
    const id = await visibleNodeId(deps, req, req.params.id);
    let last: { event: ReturnType<typeof eventEnvelope>; state: ReturnType<typeof nodeView> } | null = null;
    for await (const step of replayNode(deps.store, id, req.params.revision)) last = { event: eventEnvelope(step.event), state: nodeView(step.state) };
    if (!last || last.event.revision !== req.params.revision) throw errors.notFound('Revision', `${req.params.revision} of node ${id}`);
    return { revision: req.params.revision, ...last };
  });

  app.post('/v1/heartbeat/:id', { schema: { tags, summary: 'Agent callback for a node waiting in a "* wait" state', description: WRITE_CONVENTIONS, params: IdParams, body: HeartbeatBody, response: { 202: z.object({ status: z.string(), provision_state: z.string() }), ...errs } } }, async (req, reply) => {
    const out = await svc.command(req.principal, req.params.id, { type: 'Heartbeat', status: req.body.status, message: req.body.message ?? null }, meta(req));
    if (out.position) reply.header('Ironclad-Position', out.position);
    return reply.code(202).send({ status: req.body.status, provision_state: out.state.provision_state });
  });
}

/** History stays readable after a node record is deleted (debugging), for whoever could see it. */
async function visibleNodeId(deps: HttpDeps, req: FastifyRequest, idOrName: string): Promise<string> {
  try {
    return (await deps.nodes.resolve(req.principal, idOrName)).id;
  } catch (err) {
    if (!(err instanceof IroncladError) || err.code !== 'not_found') throw err;
    const s = deps.nodesRM.get(idOrName);
    if (s && s.exists && canSee(req.principal, s.owner)) return s.id;
    throw err;
  }
}

/** RFC 7396 JSON merge patch of one object level (null deletes a key). */
function mergePatch(base: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}
