/** Health, readiness, machine introspection. */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { machineDescription } from '../../../machines/node/node.model.js';
import { machineDescription as stackMachineDescription } from '../../../machines/stack/stack.model.js';
import { errors } from '../../domain/errors.js';
import type { HttpDeps } from '../context.js';
import { Problem } from '../schemas.js';

const MachineParams = z.strictObject({ kind: z.string() });
const MachineDescription = z.object({
  states: z.array(z.object({ name: z.string(), stable: z.boolean() })),
  transitions: z.array(z.object({ from: z.string(), event: z.string(), to: z.string() })),
  api_verbs: z.record(z.string(), z.string()),
});

export async function systemRoutes(scope: FastifyInstance, deps: HttpDeps): Promise<void> {
  const app = scope.withTypeProvider<ZodTypeProvider>();
  app.get('/healthz', { schema: { tags: ['operations'], summary: 'The process is up', response: { 200: z.object({ status: z.literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', { schema: { tags: ['operations'], summary: 'Store and bus reachable, read models caught up', response: { 200: z.object({ status: z.string(), checks: z.record(z.string(), z.string()) }), 503: z.object({ status: z.string(), checks: z.record(z.string(), z.string()) }) } } }, async (_req, reply) => {
    const r = await deps.ready();
    return reply.code(r.ok ? 200 : 503).send({ status: r.ok ? 'ready' : 'not ready', checks: r.checks });
  });

  app.get('/v1/machines/:kind', { schema: { tags: ['introspection'], summary: 'A state machine, from its definition', params: MachineParams, response: { 200: MachineDescription, 404: Problem } } }, async (req) => {
    if (req.params.kind !== 'node' && req.params.kind !== 'stack') throw errors.notFound('Machine', req.params.kind);
    const d = req.params.kind === 'node' ? machineDescription() : stackMachineDescription();
    return { states: [...d.states], transitions: [...d.transitions], api_verbs: { ...d.api_verbs } };
  });
}
