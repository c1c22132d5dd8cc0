/**
 * Stack routes (api.md "Stacks"). Templates come as a JSON object or as JSON/YAML text in
 * `template`; a whole request body may also be sent as YAML (`Content-Type: application/yaml`,
 * `application/x-yaml` or `text/yaml`), e.g. `name: web\ntemplate:\n  resources: ...`.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import YAML from 'yaml';
import { z } from 'zod';
import { allowedStackActions, STACK_ACTION_VERBS } from '../../../machines/stack/stack.model.js';
import { eventEnvelope } from '../../app/nodes/replay.js';
import { replayStack } from '../../app/stacks/replay.js';
import { errors, IroncladError } from '../../domain/errors.js';
import type { StackState } from '../../domain/stack/state.js';
import { parseTemplate, type Template } from '../../domain/stack/template.js';
import { stackView } from '../../domain/stack/view.js';
import { streamName } from '../../runtime/actor-runtime.js';
import type { HttpDeps } from '../context.js';
import { awaitTerminal, checkCallbackUrl, meta, preferWait, runAdmitted, sendTask } from '../helpers.js';
import { isTerminal, taskView } from '../../domain/tasks.js';
import { commonErrors, EventEnvelope, HistoryQuery, IdParams, page, ReadQuery, RevisionParams, Task, WRITE_CONVENTIONS } from '../schemas.js';
import {
  CreateStackBody, DeleteStackBody, SignalBody, SignalParams, Stack, StackActionBody, StackListQuery, UpdateStackBody,
} from '../stack-schemas.js';
import { caughtUp } from './read-your-writes.js';

const errs = commonErrors;
const tags = ['stacks'];
const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml'];
const BODY_FORMATS = 'Bodies are JSON, or YAML with `Content-Type: application/yaml` (also `application/x-yaml`, `text/yaml`); '
  + '`template` may be an object or JSON/YAML text. ';

/** The public stack view: stackView plus the verbs the stack accepts now. */
export function stackAnswer(s: StackState) {
  return { ...stackView(s), allowed_actions: allowedStackActions(s.status).filter((v) => v !== 'create') };
}

const template = (input: unknown): Template => parseTemplate(input, { path: 'body.template' });
const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

export async function stackRoutes(scope: FastifyInstance, deps: HttpDeps): Promise<void> {
  const app = scope.withTypeProvider<ZodTypeProvider>();
  const svc = deps.stacks;

  // Encapsulated in this plugin: only the stack routes take YAML bodies.
  app.addContentTypeParser(YAML_TYPES, { parseAs: 'string' }, (_req, body, done) => {
    try {
      done(null, YAML.parse(body as string, { uniqueKeys: true, maxAliasCount: 100 }) ?? {});
    } catch (err) {
      const first = err instanceof Error ? err.message.split('\n')[0] : String(err);
      done(new IroncladError('malformed_body', `The body is not valid YAML: ${first}`), undefined);
    }
  });

  app.post('/v1/stacks', { schema: { tags, summary: 'Create a stack (202 {stack, task})', description: BODY_FORMATS + WRITE_CONVENTIONS, body: CreateStackBody, response: { 200: z.object({ stack: Stack, task: Task }), 202: z.object({ stack: Stack, task: Task }), ...errs } } }, async (req, reply) => {
    const b = req.body;
    await checkCallbackUrl(deps, b.callback_url);
    const out = await runAdmitted(deps, () => svc.create(req.principal, {
      name: b.name, template: template(b.template), timeout_s: orNull(b.timeout_s), rollback_on_failure: orNull(b.rollback_on_failure),
      callback_url: orNull(b.callback_url), ...(b.owner !== undefined ? { owner: b.owner } : {}),
    }, meta(req)));
    // {stack, task} (api.md); `Location` is the task's, like every 202 (the stack is `/v1/stacks/{stack.id}`).
    const wait = preferWait(req);
    let task = out.task!;
    let state = out.state;
    if (wait !== null) {
      reply.header('Preference-Applied', `wait=${wait}`);
      task = await awaitTerminal(deps, task, wait);
      if (isTerminal(task.state)) state = await svc.resolve(req.principal, state.id);
    }
    if (out.position) reply.header('Ironclad-Position', out.position);
    reply.header('Location', `/v1/tasks/${task.id}`);
    if (!isTerminal(task.state)) reply.header('Retry-After', '1');
    return reply.code(wait !== null && isTerminal(task.state) ? 200 : 202).send({ stack: stackAnswer(state), task: taskView(task) });
  });

  app.get('/v1/stacks', { schema: { tags, summary: 'List stacks', querystring: StackListQuery, response: { 200: page(Stack), ...errs } } }, async (req) => {
    await caughtUp(deps, req, req.query.min_position);
    const q = req.query;
    const p = req.principal;
    const owner = p.role === 'admin' ? q.owner : q.owner !== undefined && q.owner !== p.tenant ? '\u0000none' : p.tenant;
    const res = deps.stacksRM.list({ owner, name: q.name, status: q.status, include_deleted: q.show_deleted ?? false }, q.limit, q.cursor ?? null);
    return { items: res.items.map(stackAnswer), next_cursor: res.next_cursor };
  });

  app.get('/v1/stacks/:id', { schema: { tags, summary: 'Show a stack (by id or name; deleted stacks stay readable)', params: IdParams, querystring: ReadQuery, response: { 200: Stack, ...errs } } }, async (req, reply) => {
    await caughtUp(deps, req, req.query.min_position);
    const s = await svc.resolve(req.principal, req.params.id);
    reply.header('ETag', `"${s.revision}"`);
    return stackAnswer(s);
  });

  app.put('/v1/stacks/:id', { schema: { tags, summary: 'Update a stack (a new traversal; allowed while a create/update runs)', description: BODY_FORMATS + WRITE_CONVENTIONS, params: IdParams, body: UpdateStackBody, response: { 200: Task, 202: Task, ...errs } } }, async (req, reply) => {
    const b = req.body;
    await checkCallbackUrl(deps, b.callback_url);
    const out = await runAdmitted(deps, () => svc.update(req.principal, req.params.id, {
      template: template(b.template), timeout_s: orNull(b.timeout_s), rollback_on_failure: orNull(b.rollback_on_failure), callback_url: orNull(b.callback_url),
    }, meta(req)));
    return sendTask(deps, req, reply, out.task!, { coalesced: out.coalesced, position: out.position });
  });

  app.delete('/v1/stacks/:id', { schema: { tags, summary: 'Delete a stack (its resources in reverse dependency order)', description: WRITE_CONVENTIONS, params: IdParams, body: DeleteStackBody.nullish(), response: { 200: Task, 202: Task, ...errs } } }, async (req, reply) => {
    const b = req.body ?? {};
    await checkCallbackUrl(deps, b.callback_url);
    const out = await runAdmitted(deps, () => svc.remove(req.principal, req.params.id, orNull(b.callback_url), meta(req)));
    return sendTask(deps, req, reply, out.task!, { coalesced: out.coalesced, position: out.position });
  });

  app.post('/v1/stacks/:id/actions', { schema: { tags, summary: 'cancel_update or rollback', description: WRITE_CONVENTIONS, params: IdParams, body: StackActionBody, response: { 200: Task, 202: Task, ...errs } } }, async (req, reply) => {
    const { action, callback_url } = req.body;
    if (action !== 'cancel_update' && action !== 'rollback') {
      throw new IroncladError('unknown_action', `Unknown stack action "${action}".`, { errors: [{ path: 'body.action', message: `must be one of: ${STACK_ACTION_VERBS.join(', ')}` }] });
    }
    await checkCallbackUrl(deps, callback_url);
    const out = await runAdmitted(deps, () => svc.action(req.principal, req.params.id, action, orNull(callback_url), meta(req)));
    return sendTask(deps, req, reply, out.task!, { coalesced: out.coalesced, position: out.position });
  });

  app.post('/v1/stacks/:id/resources/:name/signal', { schema: { tags, summary: 'Release a resource held by hold_on (the newest held record of that name)', description: WRITE_CONVENTIONS, params: SignalParams, body: SignalBody, response: { 200: Stack, ...errs } } }, async (req, reply) => {
    const out = await svc.signal(req.principal, req.params.id, req.params.name, req.body.status, req.body.reason ?? null, meta(req));
    if (out.position) reply.header('Ironclad-Position', out.position);
    return stackAnswer(out.state);
  });

  app.get('/v1/stacks/:id/history', { schema: { tags, summary: "A stack's events", params: IdParams, querystring: HistoryQuery, response: { 200: page(EventEnvelope), ...errs } } }, async (req) => {
    await caughtUp(deps, req, req.query.min_position);
    const { id } = await svc.resolve(req.principal, req.params.id);
    const events = await deps.store.readStream(streamName('stack', id), { fromRevision: req.query.from_revision, limit: req.query.limit + 1 });
    const items = events.slice(0, req.query.limit).map(eventEnvelope);
    return { items, next_cursor: events.length > req.query.limit ? String(events[req.query.limit]!.revision) : null };
  });

  app.get('/v1/stacks/:id/history/:revision', { schema: { tags, summary: 'The stack as it was right after one event (replayed)', params: RevisionParams, querystring: ReadQuery, response: { 200: z.object({ revision: z.number(), event: EventEnvelope, state: Stack }), ...errs } } }, async (req) => {
    await caughtUp(deps, req, req.query.min_position);
    const { id } = await svc.resolve(req.principal, req.params.id);
    let last: { event: ReturnType<typeof eventEnvelope>; state: ReturnType<typeof stackAnswer> } | null = null;
    for await (const step of replayStack(deps.store, id, req.params.revision)) last = { event: eventEnvelope(step.event), state: stackAnswer(step.state) };
    if (!last || last.event.revision !== req.params.revision) throw errors.notFound('Revision', `${req.params.revision} of stack ${id}`);
    return { revision: req.params.revision, ...last };
  });
}
