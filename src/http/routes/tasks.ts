/** Task routes (api.md "Tasks"): list, show (with long-poll), cancel. */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { errors } from '../../domain/errors.js';
import { canSee } from '../../domain/principal.js';
import { isTerminal, taskView } from '../../domain/tasks.js';
import type { HttpDeps } from '../context.js';
import { awaitTerminal, meta, preferWait, sendTask } from '../helpers.js';
import { commonErrors, IdParams, page, ReadQuery, Task, TaskListQuery, WRITE_CONVENTIONS } from '../schemas.js';
import { caughtUp } from './read-your-writes.js';

const errs = commonErrors;
const tags = ['tasks'];

export async function taskRoutes(scope: FastifyInstance, deps: HttpDeps): Promise<void> {
  const app = scope.withTypeProvider<ZodTypeProvider>();

  /**
   * A task the principal may see. A task created a moment ago may not be projected yet (the 202
   * comes right after the append): before answering 404, wait briefly for the read models to
   * reach the log's head, so following `Location` right away works.
   */
  const visibleTask = async (principal: Parameters<typeof canSee>[0], id: string) => {
    let t = deps.tasksRM.get(id);
    if (!t) {
      const head = await deps.store.headPosition();
      if (head !== null && (await deps.projector.waitFor(head, 2000))) t = deps.tasksRM.get(id);
    }
    if (!t || !canSee(principal, t.owner)) throw errors.notFound('Task', id);
    return t;
  };

  app.get('/v1/tasks', { schema: { tags, summary: 'List tasks, newest first', querystring: TaskListQuery, response: { 200: page(Task), ...errs } } }, async (req) => {
    await caughtUp(deps, req, req.query.min_position);
    const q = req.query;
    const owner = req.principal.role === 'admin' ? undefined : req.principal.tenant;
    const res = deps.tasksRM.list({ owner, resource_id: q.resource_id, resource_type: q.resource_type, state: q.state, action: q.action, since: q.since }, q.limit, q.cursor ?? null);
    return { items: res.items.map(taskView), next_cursor: res.next_cursor };
  });

  app.get('/v1/tasks/:id', { schema: { tags, summary: 'Show a task (200 terminal, 202 not yet; honours Prefer: wait=N)', params: IdParams, querystring: ReadQuery, response: { 200: Task, 202: Task, ...errs } } }, async (req, reply) => {
    await caughtUp(deps, req, req.query.min_position);
    let t = await visibleTask(req.principal, req.params.id);
    const wait = preferWait(req);
    if (wait !== null) {
      reply.header('Preference-Applied', `wait=${wait}`);
      t = await awaitTerminal(deps, t, wait);
    }
    if (!isTerminal(t.state)) reply.code(202).header('Retry-After', '1');
    return taskView(t);
  });

  app.post('/v1/tasks/:id/cancel', { schema: { tags, summary: 'Cancel a queued task, or abort a waiting/held operation', description: WRITE_CONVENTIONS, params: IdParams, response: { 200: Task, 202: Task, ...errs } } }, async (req, reply) => {
    const t = await visibleTask(req.principal, req.params.id);
    if (isTerminal(t.state)) throw errors.notCancellable(`Task ${t.id} is already ${t.state}.`, t.state);
    if (t.resource_type === 'stack') {
      throw errors.notCancellable(`Task ${t.id} belongs to stack ${t.resource_id}: stop a stack's create or update with POST /v1/stacks/${t.resource_id}/actions {"action": "cancel_update"}.`, t.state);
    }
    const out = await deps.nodes.command(req.principal, t.resource_id, { type: 'CancelTask', task_id: t.id, abort_task_id: deps.ids.next() }, meta(req));
    if (out.position) reply.header('Ironclad-Position', out.position);
    if (out.task && out.task.id === t.id) return reply.code(200).send(taskView(out.task));
    return sendTask(deps, req, reply, out.task!, { position: out.position });
  });
}
