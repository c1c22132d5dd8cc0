/**
 * The composition root: the only file that picks concrete adapters and wires the planes.
 * `createIronclad` is used by `ironclad serve`, by the API tests (with in-memory parts and a
 * fake clock) and by the benchmark.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import type { Config } from './config.js';
import { createSecretBox, loadSecretKey } from './adapters/crypto/secret-box.js';
import { createFakeDriver } from './adapters/drivers/fake.js';
import { createIpmiDriver } from './adapters/drivers/ipmi.js';
import { createKurrentEventStore } from './adapters/kurrentdb/event-store.js';
import { createNatsBus } from './adapters/nats/bus.js';
import { openSqlite } from './adapters/sqlite/open.js';
import { createSqliteEventStore } from './adapters/sqlite/event-store.js';
import { createSqliteSnapshotStore } from './adapters/sqlite/snapshot-store.js';
import { createSystemClock, createUuidIds } from './adapters/system/clock.js';
import { createNodeService } from './app/nodes/node-service.js';
import { createProjector } from './app/projector.js';
import { createNameClaims } from './app/read-models/name-claims.js';
import { createNodesReadModel } from './app/read-models/nodes.js';
import { createReadModelSchema } from './app/read-models/schema.js';
import { createTasksReadModel } from './app/read-models/tasks.js';
import { createTaskWaiters } from './app/task-waiters.js';
import { createIdempotencyStore } from './app/idempotency-store.js';
import { createBacklog } from './app/backlog.js';
import { createCallbackAllowList } from './app/callbacks/allow-list.js';
import { createCallbackDispatcher } from './app/callbacks/dispatcher.js';
import { createNotifier } from './app/notifications/notifier.js';
import { webhookSecrets } from './app/callbacks/signature.js';
import { createConductor } from './app/work/conductor.js';
import { createDeadlineScheduler } from './app/work/deadlines.js';
import { createPowerSync } from './app/work/power-sync.js';
import { evolveNode, initialNodeState, type NodeState } from './domain/node/state.js';
import { SYSTEM } from './domain/principal.js';
import { openSecrets } from './domain/secrets.js';
import { createTokenTable, isLoopback } from './http/auth.js';
import { buildServer } from './http/server.js';
import type { Bus } from './ports/bus.js';
import type { Clock, Ids } from './ports/clock.js';
import type { Driver } from './ports/driver.js';
import type { EventStore } from './ports/event-store.js';
import type { Logger } from './ports/logger.js';
import type { SnapshotStore } from './ports/snapshot-store.js';
import { createActorRuntime } from './runtime/actor-runtime.js';

export interface IroncladOptions {
  config: Config;
  /** Overrides for tests and benchmarks; by default everything comes from the config. */
  store?: EventStore;
  snapshots?: SnapshotStore;
  db?: Database.Database;
  clock?: Clock;
  ids?: Ids;
  logger?: Logger & FastifyBaseLogger;
  drivers?: Record<string, Driver>;
}

export interface Ironclad {
  app: FastifyInstance;
  config: Config;
  store: EventStore;
  /** Starts the planes (projections caught up, work re-dispatched, deadlines re-armed). Does not listen. */
  start(): Promise<void>;
  listen(): Promise<string>;
  close(): Promise<void>;
  internals: Record<string, unknown>;
}

export class StartupError extends Error {}

export async function createIronclad(opts: IroncladOptions): Promise<Ironclad> {
  const { config } = opts;
  const tokens = createTokenTable(config.IRONCLAD_TOKENS, config.IRONCLAD_TOKEN_FILE);
  if (tokens.open && !isLoopback(config.HOST)) {
    throw new StartupError(`Refusing to start: no tokens are configured (IRONCLAD_TOKENS / IRONCLAD_TOKEN_FILE) and HOST=${config.HOST} is not a loopback address. Configure tokens, or bind 127.0.0.1.`);
  }
  const logger = opts.logger ?? pino({
    level: config.IRONCLAD_LOG_LEVEL,
    redact: { paths: ['req.headers.authorization', '*.driver_info', '*.ipmi_password', '*.password', '*.token', '*.secret'], censor: '******' },
  });
  if (tokens.open) logger.warn({ host: config.HOST }, 'no tokens configured: running OPEN (single tenant "default", admin) on a loopback address only');

  const clock = opts.clock ?? createSystemClock();
  const ids = opts.ids ?? createUuidIds();
  let db = opts.db;
  if (!db) {
    mkdirSync(config.IRONCLAD_DATA_DIR, { recursive: true });
    db = openSqlite(join(config.IRONCLAD_DATA_DIR, 'ironclad.db'), { synchronous: config.IRONCLAD_SQLITE_SYNC });
  }
  const store = opts.store ?? (config.KURRENTDB_URL ? createKurrentEventStore(config.KURRENTDB_URL) : createSqliteEventStore(db));
  const snapshots = opts.snapshots ?? createSqliteSnapshotStore(db);
  const keyFile = join(config.IRONCLAD_DATA_DIR, 'secret.key');
  if (!config.IRONCLAD_SECRET_KEY) mkdirSync(config.IRONCLAD_DATA_DIR, { recursive: true });
  const box = createSecretBox(loadSecretKey(config.IRONCLAD_SECRET_KEY, keyFile));

  createReadModelSchema(db);
  const nodesRM = createNodesReadModel(db);
  const tasksRM = createTasksReadModel(db);
  const names = createNameClaims(db);
  const runtime = createActorRuntime<NodeState>({
    store, snapshots, clock, ids,
    model: { entityType: 'node', initial: initialNodeState, evolve: evolveNode, snapshotVersion: 1 },
  });
  const decideConfig = {
    queueDepth: config.IRONCLAD_QUEUE_DEPTH, stepTimeoutS: config.IRONCLAD_STEP_TIMEOUT_S, callbackTimeoutS: config.IRONCLAD_CALLBACK_TIMEOUT_S,
    holdTimeoutS: config.IRONCLAD_HOLD_TIMEOUT_S, powerSyncFailures: config.IRONCLAD_POWER_SYNC_FAILURES,
  };
  const nodes = createNodeService({ runtime, nodes: nodesRM, clock, ids, box, config: decideConfig, names });
  const projector = createProjector({ store, db, nodes: nodesRM, tasks: tasksRM, log: logger });
  const waiters = createTaskWaiters();

  const fake = createFakeDriver(clock);
  // The ipmi driver does real power control; its other steps behave like the fake driver's defaults (no deploy agent here).
  const drivers: Record<string, Driver> = opts.drivers ?? {
    fake,
    ipmi: createIpmiDriver({ steps: fake, log: (msg, fields) => logger.info({ ...fields }, msg) }),
  };
  const internal = { request_id: null, idempotency_key: null };
  const system = (nodeId: string, command: Parameters<typeof nodes.send>[2], causation: string): Promise<unknown> =>
    nodes.send(SYSTEM, nodeId, command, { ...internal, causation_id: causation }).catch((err) => logger.error({ err, node_id: nodeId }, 'internal command failed'));
  const conductor = createConductor({
    drivers, concurrency: config.IRONCLAD_WORKERS, log: logger,
    driverNode: (s) => ({ id: s.id, driver_info: openSecrets(s.driver_info, box) }),
    reportStep: async (o, outcome) => void (await system(o.node_id, { type: 'ReportStepOutcome', op_id: o.op_id, step_id: o.step_id, outcome }, o.step_id)),
    reportPower: async (o, result) => void (await system(o.node_id, { type: 'ReportPowerOutcome', op_id: o.op_id, step_id: o.step_id, result }, o.step_id)),
  });
  const deadlines = createDeadlineScheduler({
    clock, expire: (nodeId, opId, deadlineAt) => void system(nodeId, { type: 'ExpireDeadline', op_id: opId, deadline_at: deadlineAt }, opId),
  });
  const powerSync = createPowerSync({
    clock, periodS: config.IRONCLAD_POWER_SYNC_S, concurrency: config.IRONCLAD_POWER_SYNC_CONCURRENCY, drivers, log: logger,
    nodes: () => nodesRM.allLive(),
    driverNode: (s) => ({ id: s.id, driver_info: openSecrets(s.driver_info, box) }),
    observe: (nodeId, result) => system(nodeId, { type: 'ObservePower', result }, 'power-sync'),
  });

  const callbackAllow = createCallbackAllowList(config.IRONCLAD_CALLBACK_ALLOW, { allowLoopback: tokens.open });
  const webhookKeyFile = join(config.IRONCLAD_DATA_DIR, 'webhook.key');
  const defaultWebhookSecret = config.IRONCLAD_WEBHOOK_SECRET ?? loadSecretKey(undefined, webhookKeyFile).toString('hex');
  if (!config.IRONCLAD_WEBHOOK_SECRET && !config.IRONCLAD_WEBHOOK_SECRETS) {
    logger.warn({ file: webhookKeyFile }, 'no IRONCLAD_WEBHOOK_SECRET(S): callbacks are signed with a generated secret kept in the data directory');
  }
  const callbacks = createCallbackDispatcher({
    clock, log: logger, allow: callbackAllow, secretFor: webhookSecrets(config.IRONCLAD_WEBHOOK_SECRETS, defaultWebhookSecret),
    maxAttempts: config.IRONCLAD_CALLBACK_MAX_ATTEMPTS, backoffMs: config.IRONCLAD_CALLBACK_BACKOFF_MS, timeoutMs: config.IRONCLAD_CALLBACK_HTTP_TIMEOUT_MS,
    record: async (task, a) => void (await system(task.resource_id, { type: 'RecordCallbackAttempt', ...a }, task.id)),
  });

  // NATS (issue 3): with NATS_URL, every stored event is also published to JetStream (IRONCLAD_EVENTS).
  const bus: Bus | null = config.NATS_URL ? await createNatsBus({ servers: config.NATS_URL, log: logger, name: `ironclad ${config.HOST}:${config.PORT}` }) : null;
  const notifier = bus ? createNotifier({ store, db, bus, nodeOwner: (id) => nodesRM.get(id)?.owner, log: logger }) : null;

  let live = false;
  projector.onBatch((batch) => {
    waiters.notify(batch.tasks.values());
    if (live) for (const t of batch.tasks.values()) callbacks.reconcile(t);
    if (!live) return; // during the start-up catch-up the scan below dispatches from the final state
    for (const s of batch.nodes.values()) {
      conductor.reconcile(s);
      deadlines.reconcile(s);
    }
  });

  const idempotency = createIdempotencyStore(db, {
    retentionMs: config.IRONCLAD_IDEMPOTENCY_RETENTION_S * 1000, abandonAfterMs: 120_000, now: () => clock.now(),
  });
  const backlog = createBacklog({
    clock, limit: config.IRONCLAD_MAX_PENDING, pending: tasksRM.pendingCount, finished: tasksRM.finishedCount, projectedTo: () => projector.position(),
  });
  const app = await buildServer({
    config, nodes, nodesRM, tasksRM, projector, store, waiters, tokens, ids, logger, idempotency, backlog, callbackAllow,
    metrics: {
      pendingTasks: tasksRM.pendingCount, projectedEvents: projector.eventsApplied, projectionPosition: projector.position,
      cachedActors: runtime.cachedCount, work: conductor.stats,
    },
    async ready() {
      const checks: Record<string, string> = {};
      try {
        await store.headPosition();
        checks['store'] = 'ok';
      } catch (err) {
        checks['store'] = `unreachable: ${(err as Error).message}`;
      }
      checks['bus'] = 'in-process';
      if (bus) {
        try {
          await bus.ping();
          checks['bus'] = 'ok';
        } catch (err) {
          checks['bus'] = `unreachable: ${(err as Error).message}`;
        }
      }
      checks['projections'] = live ? `at ${projector.position() ?? 'start'}` : 'catching up';
      return { ok: live && checks['store'] === 'ok' && (!bus || checks['bus'] === 'ok'), checks };
    },
  }, { logger });

  let closed = false;
  let cancelPurge: (() => void) | null = null;
  return {
    app, config, store,
    async start() {
      await projector.start();
      await notifier?.start();
      names.reconcile();
      for (const s of nodesRM.withRunningSteps()) conductor.reconcile(s);
      for (const s of nodesRM.withDeadlines()) deadlines.reconcile(s);
      for (const t of tasksRM.withPendingCallbacks()) callbacks.reconcile(t);
      live = true;
      powerSync.start();
      const purge = (): void => {
        idempotency.purgeExpired();
        cancelPurge = clock.setTimeout(purge, 3600_000);
      };
      purge();
    },
    async listen() {
      return app.listen({ host: config.HOST, port: config.PORT });
    },
    async close() {
      if (closed) return;
      closed = true;
      powerSync.stop();
      cancelPurge?.();
      await app.close();
      conductor.stop();
      deadlines.stop();
      callbacks.stop();
      runtime.close();
      await notifier?.stop();
      await bus?.close();
      await projector.close();
      await store.close();
      if (!opts.db) db!.close();
    },
    internals: { bus, notifier, callbacks, idempotency, backlog, nodes, runtime, conductor, deadlines, projector, nodesRM, tasksRM, fake, powerSync, evolveNode },
  };
}
