/**
 * Builds the fastify server: zod type provider, OpenAPI + /docs, auth, request ids, problem
 * answers for every error (404 routes and 405 methods included), and the routes.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import { registerLoadShedding } from './load-shedding.js';
import { registerIdempotency } from './idempotency.js';
import { registerMetrics } from './metrics.js';
import { jsonSchemaTransform, jsonSchemaTransformObject, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Principal } from '../domain/principal.js';
import { IroncladError } from '../domain/errors.js';
import type { HttpDeps } from './context.js';
import { problemOf, sendProblem, toProblem } from './problem.js';
import { nodeRoutes } from './routes/nodes.js';
import { taskRoutes } from './routes/tasks.js';
import { systemRoutes } from './routes/system.js';
import { eventRoutes } from './routes/events.js';
import { stackRoutes } from './routes/stacks.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

const PUBLIC = new Set(['/healthz', '/readyz', '/openapi.json', '/metrics']);
const isPublic = (url: string): boolean => PUBLIC.has(url.split('?')[0]!) || url.startsWith('/docs');

export async function buildServer(deps: HttpDeps, options: { logger?: FastifyBaseLogger } = {}): Promise<FastifyInstance> {
  const base = Fastify({
    ...(options.logger ? { loggerInstance: options.logger } : { logger: false }),
    bodyLimit: deps.config.IRONCLAD_BODY_LIMIT,
    requestIdHeader: false,
    // A client's X-Request-Id is kept when it is a sane token, else replaced (it goes into logs and events).
    genReqId: (req) => {
      const sent = req.headers['x-request-id'];
      return typeof sent === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(sent) ? sent : `req-${deps.ids.next()}`;
    },
    routerOptions: { ignoreTrailingSlash: true },
  });
  const app = base.withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  // Bodies are JSON (api.md). Fastify's built-in text/plain parser would hand a text body to zod as a string and
  // answer "invalid field: body"; without it every other content type gets the same "send application/json" problem.
  app.removeContentTypeParser('text/plain');
  // Responses are built from typed views; serialise them as plain JSON (the zod response schemas document them).
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  app.decorateRequest('principal', null as unknown as Principal);

  const routes: { method: string; re: RegExp }[] = [];
  app.addHook('onRoute', (r) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    const re = new RegExp(`^${r.url.replace(/\/$/, '').replace(/:[^/]+/g, '[^/]+').replace(/\*/g, '.*')}/?$`);
    for (const m of methods) routes.push({ method: m, re });
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('X-Request-Id', req.id);
    reply.header('X-Content-Type-Options', 'nosniff');
    reply.header('Cache-Control', 'no-store');
  });

  app.setErrorHandler((err, req, reply) => {
    const p = toProblem(err, req);
    if (typeof p['retry_after_s'] === 'number') reply.header('Retry-After', String(p['retry_after_s']));
    if (err instanceof IroncladError && p.code === 'unauthorized') reply.header('WWW-Authenticate', 'Bearer');
    return sendProblem(reply, p);
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const allowed = routes.filter((r) => r.re.test(path)).map((r) => r.method);
    if (allowed.length > 0) {
      reply.header('Allow', [...new Set(allowed)].join(', '));
      return sendProblem(reply, problemOf('method_not_allowed', `${req.method} is not allowed on ${path}; allowed: ${[...new Set(allowed)].join(', ')}.`, {}, req.url));
    }
    return sendProblem(reply, problemOf('not_found', `No route ${req.method} ${path}.`, {}, req.url));
  });

  // Security headers that make sense for a JSON API (CSP is left to the /docs page's needs).
  await app.register(helmet, { contentSecurityPolicy: false, crossOriginEmbedderPolicy: false });
  // Shed before authentication and parsing: a refusal must cost next to nothing (503 overloaded + Retry-After).
  await registerLoadShedding(base, {
    maxEventLoopDelayMs: deps.config.IRONCLAD_SHED_EVENT_LOOP_DELAY_MS, maxEventLoopUtilization: deps.config.IRONCLAD_SHED_EVENT_LOOP_UTILIZATION,
    maxHeapMb: deps.config.IRONCLAD_SHED_HEAP_MB, sampleIntervalMs: deps.config.IRONCLAD_SHED_SAMPLE_MS, retryAfterS: 1, exempt: isPublic,
  });
  // Authenticate after helmet's onRequest hook, so 401 answers carry the security headers too.
  app.addHook('onRequest', async (req) => {
    if (isPublic(req.url)) return;
    req.principal = deps.tokens.authenticate(req.headers.authorization);
  });
  await app.register(rateLimit, {
    max: deps.config.IRONCLAD_RATE_LIMIT,
    timeWindow: 60_000,
    // Route-level onRequest runs after the server's auth hook above, so the principal is known; counting
    // here (not in preHandler) also counts requests that fail parsing or validation, before their body is read.
    hook: 'onRequest',
    keyGenerator: (req) => req.principal?.id ?? req.ip,
    allowList: (req) => isPublic(req.url),
    errorResponseBuilder: (_req, ctx) => Object.assign(new Error(`More than ${ctx.max} requests per minute for this token; retry in ${Math.ceil(ctx.ttl / 1000)} s.`), { statusCode: 429, retryAfterS: Math.max(1, Math.ceil(ctx.ttl / 1000)) }),
  });
  registerIdempotency(base, deps.idempotency);
  registerMetrics(base, deps.metrics);
  await app.register(swagger, {
    openapi: {
      info: { title: 'Ironclad', version: '0.1.0', description: 'Asynchronous control plane for bare-metal fleets. Errors are RFC 9457 problems with a stable `code`.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  // Graceful stop: held long-polls answer at once (202, the task as it is) and every response sent
  // while closing ends its connection, so keep-alive clients cannot hold the shutdown open.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    deps.waiters.releaseAll();
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    if (closing) reply.header('Connection', 'close');
    return payload;
  });
  await app.register(async (scope) => {
    await systemRoutes(scope, deps);
    await nodeRoutes(scope, deps);
    await taskRoutes(scope, deps);
    await eventRoutes(scope, deps);
    // Its own plugin: the YAML body parser it adds stays with the stack routes.
    await scope.register(async (stacks) => stackRoutes(stacks, deps));
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return base as unknown as FastifyInstance;
}
