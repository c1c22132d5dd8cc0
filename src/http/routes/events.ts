/**
 * GET /v1/events: the event log as Server-Sent Events. Starts live (from now) unless
 * `since_position` or `Last-Event-ID` says where to resume; every event the caller's tenant may
 * see is sent once, in log order, with `id:` = its position. Secrets are redacted.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { canSee } from '../../domain/principal.js';
import { eventEnvelope } from '../../app/nodes/replay.js';
import { entityOf } from '../../app/projector.js';
import type { StoredEvent } from '../../ports/event-store.js';
import type { HttpDeps } from '../context.js';
import { Problem } from '../schemas.js';

const EventsQuery = z.strictObject({
  resource_id: z.string().optional(),
  since_position: z.string().regex(/^\d+$/, 'a position (digits)').optional(),
});

export async function eventRoutes(scope: FastifyInstance, deps: HttpDeps): Promise<void> {
  const app = scope.withTypeProvider<ZodTypeProvider>();
  const open = new Set<import('node:http').ServerResponse>();
  // Streams never end by themselves: end them when the server closes so shutdown is not held up.
  app.addHook('preClose', async () => {
    for (const raw of open) raw.end();
  });
  app.get('/v1/events', {
    schema: {
      tags: ['events'], summary: 'Live tail of events (text/event-stream), resumable with Last-Event-ID or since_position',
      querystring: EventsQuery, produces: ['text/event-stream'], response: { 400: Problem, 401: Problem },
    },
  }, async (req, reply) => {
    const lastId = req.headers['last-event-id'];
    const resume = req.query.since_position ?? (typeof lastId === 'string' && /^\d+$/.test(lastId) ? lastId : undefined);
    const after = resume ?? (await deps.store.headPosition()) ?? null;
    const principal = req.principal;
    const owners = new Map<string, string | null>();
    const ownerOf = (e: StoredEvent): string | null => {
      const { type, id } = entityOf(e.stream);
      const key = `${type}/${id}`;
      if (!owners.has(key)) {
        const owner = e.type === 'NodeEnrolled' || e.type === 'StackCreateRequested' ? (e.data['owner'] as string)
          : type === 'node' ? deps.nodesRM.get(id)?.owner ?? null : type === 'stack' ? deps.stacksRM.get(id)?.owner ?? null : null;
        if (owner !== null) owners.set(key, owner);
        return owner;
      }
      return owners.get(key) ?? null;
    };
    // Keep the headers the hooks already set (helmet, X-Request-Id) on the hijacked stream.
    const inherited = Object.fromEntries(Object.entries(reply.getHeaders()).filter(([, v]) => v !== undefined)) as Record<string, string>;
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      ...inherited,
      'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive',
      'x-request-id': req.id, 'x-accel-buffering': 'no',
    });
    raw.write(`: ironclad events from ${after ?? 'the beginning'}\nretry: 2000\n\n`);
    const sub = deps.store.subscribeAll(after, async (events) => {
      for (const e of events) {
        const owner = ownerOf(e);
        if (owner === null || !canSee(principal, owner)) continue;
        if (req.query.resource_id && entityOf(e.stream).id !== req.query.resource_id) continue;
        const ok = raw.write(`id: ${e.position}\nevent: ${e.type}\ndata: ${JSON.stringify(eventEnvelope(e))}\n\n`);
        if (!ok) await new Promise<void>((r) => raw.once('drain', () => r()));
      }
    });
    const keepAlive = setInterval(() => raw.write(': keep-alive\n\n'), 15_000);
    keepAlive.unref();
    open.add(raw);
    raw.on('close', () => {
      open.delete(raw);
      clearInterval(keepAlive);
      void sub.close();
    });
  });
}
