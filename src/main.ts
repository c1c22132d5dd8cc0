/**
 * The composition root: the only file that picks concrete adapters and wires the planes.
 * `createIronclad` is used by `ironclad serve`, by the API tests (with in-memory parts and a
 * fake clock) and by the benchmark.
 */
import { mkdirSync } from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
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
import { embeddedOwnership, type Ownership } from './app/cluster/ownership.js';
import { connectCluster, ownedOrThrow } from './app/cluster/cluster.js';
import { createCommandRouter } from './app/cluster/command-router.js';
import { createActorHost } from './app/cluster/actor-host.js';
import { entityHandler, idempotentNodeId } from './app/cluster/entity-commands.js';
import { createWorkDispatcher } from './app/cluster/work-dispatcher.js';
import { createWorkConsumer, ReadModelLagError } from './app/cluster/work-consumer.js';
import { NATS_DEFINITIONS } from './adapters/nats/definitions.js';
import { createPowerSync } from './app/work/power-sync.js';
import { createStacksReadModel } from './app/read-models/stacks.js';
import type { ResourceWorker } from './app/stacks/resource-worker.js';
import { createTestResourceWorker } from './app/stacks/resources/test-resource.js';
import { createBaremetalServerWorker } from './app/stacks/resources/baremetal-server.js';
import { createNodeWaiter } from './app/stacks/resources/node-waiter.js';
import { createStackConductor } from './app/stacks/stack-conductor.js';
import { createStackDeadlines } from './app/stacks/stack-deadlines.js';
import { createStackService } from './app/stacks/stack-service.js';
import { evolveStack, initialStackState, type StackState } from './domain/stack/state.js';
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
  /** Stack resource workers replacing the default ones of the same type (tests: workers the test controls). */
  resourceWorkers?: ResourceWorker[];
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
  // IRONCLAD_EVENT_STORE_FILE: events and snapshots in a file shared by the processes of one host;
  // read models, checkpoints and everything else stay in this process's own data dir.
  const eventsFile = config.IRONCLAD_EVENT_STORE_FILE;
  const eventsDb = !opts.db && eventsFile && resolvePath(eventsFile) !== resolvePath(config.IRONCLAD_DATA_DIR, 'ironclad.db')
    ? openSqlite(eventsFile, { synchronous: config.IRONCLAD_SQLITE_SYNC })
    : null;
  const store = opts.store ?? (config.KURRENTDB_URL ? createKurrentEventStore(config.KURRENTDB_URL) : createSqliteEventStore(eventsDb ?? db));
  const snapshots = opts.snapshots ?? createSqliteSnapshotStore(eventsDb ?? db);
  const keyFile = join(config.IRONCLAD_DATA_DIR, 'secret.key');
  if (!config.IRONCLAD_SECRET_KEY) mkdirSync(config.IRONCLAD_DATA_DIR, { recursive: true });
  const box = createSecretBox(loadSecretKey(config.IRONCLAD_SECRET_KEY, keyFile));

  createReadModelSchema(db);
  const nodesRM = createNodesReadModel(db);
  const tasksRM = createTasksReadModel(db);
  const names = createNameClaims(db);
  // Cluster (issue 3, docs/decisions/0004-cluster.md): with NATS_URL, partition leases in NATS KV decide
  // which process decides for which entity; idempotency keys and name claims are shared in KV too.
  const cluster = config.NATS_URL ? await connectCluster({
    servers: config.NATS_URL, name: `${config.HOST}:${config.PORT}`, partitions: config.IRONCLAD_PARTITIONS, leaseTtlMs: config.IRONCLAD_LEASE_TTL_MS,
    idempotencyRetentionMs: config.IRONCLAD_IDEMPOTENCY_RETENTION_S * 1000, log: logger, now: () => clock.now(),
  }) : null;
  const ownership: Ownership = cluster?.leases ?? embeddedOwnership(config.IRONCLAD_PARTITIONS);
  const owned = cluster ? { guard: ownedOrThrow(ownership), cacheable: (id: string) => ownership.ownsEntity(id) } : {};
  const router = cluster ? createCommandRouter({ bus: () => bus!, partitions: config.IRONCLAD_PARTITIONS, timeoutMs: config.IRONCLAD_COMMAND_TIMEOUT_MS }) : undefined;
  const runtime = createActorRuntime<NodeState>({
    store, snapshots, clock, ids, ...owned,
    model: { entityType: 'node', initial: initialNodeState, evolve: evolveNode, snapshotVersion: 1 },
  });
  const decideConfig = {
    queueDepth: config.IRONCLAD_QUEUE_DEPTH, stepTimeoutS: config.IRONCLAD_STEP_TIMEOUT_S, callbackTimeoutS: config.IRONCLAD_CALLBACK_TIMEOUT_S,
    holdTimeoutS: config.IRONCLAD_HOLD_TIMEOUT_S, powerSyncFailures: config.IRONCLAD_POWER_SYNC_FAILURES,
  };
  const nodes = createNodeService({
    runtime, nodes: nodesRM, clock, ids, box, config: decideConfig, names: cluster?.names.node ?? names,
    router, newNodeId: cluster ? idempotentNodeId(() => ids.next()) : undefined,
  });
  const stacksRM = createStacksReadModel(db);
  const stackNames = createNameClaims(db, 'stack');
  const stackRuntime = createActorRuntime<StackState>({
    store, snapshots, clock, ids, ...owned,
    model: { entityType: 'stack', initial: initialStackState, evolve: evolveStack, snapshotVersion: 1 },
  });
  const stacks = createStackService({ runtime: stackRuntime, stacks: stacksRM, clock, ids, config: { defaultTimeoutS: config.IRONCLAD_STACK_TIMEOUT_S }, names: cluster?.names.stack ?? stackNames, router });
  const projector = createProjector({ store, db, nodes: nodesRM, tasks: tasksRM, log: logger, stacks: stacksRM });
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
  // Stacks (issue 5): work orders run by the resource workers of this process, reported as SYSTEM.
  const stackSystem = (stackId: string, command: Parameters<typeof stacks.send>[2], causation: string) =>
    stacks.send(SYSTEM, stackId, command, { ...internal, causation_id: causation });
  // Bare-metal servers wait on their nodes through the projected batches (no polling).
  const nodeWaiter = createNodeWaiter({ get: (id) => nodesRM.get(id) });
  projector.onBatch((batch) => nodeWaiter.notify(batch.nodes.values()));
  const defaultWorkers: ResourceWorker[] = [
    createTestResourceWorker({ clock, ids }),
    createBaremetalServerWorker({ nodes, nodesRM, waiter: nodeWaiter, ids, clock }),
  ];
  const overrides = new Set((opts.resourceWorkers ?? []).map((w) => w.type));
  const stackConductor = createStackConductor({
    workers: [...defaultWorkers.filter((w) => !overrides.has(w.type)), ...(opts.resourceWorkers ?? [])],
    concurrency: config.IRONCLAD_WORKERS, log: logger,
    report: async (stackId, r) => void (await stackSystem(stackId, { type: 'ReportResourceOutcome', ...r }, r.action_id)),
  });
  const stackDeadlines = createStackDeadlines({
    clock,
    expire: (stackId, traversalId, deadlineAt) => void stackSystem(stackId, { type: 'ExpireTimeout', traversal_id: traversalId, deadline_at: deadlineAt }, traversalId)
      .catch((err) => logger.error({ err, stack_id: stackId }, 'stack timeout could not be recorded')),
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
    logger.warn({ file: webhookKeyFile }, config.NATS_URL
      ? 'no IRONCLAD_WEBHOOK_SECRET(S): callbacks are signed with a secret generated into THIS data directory, so each process of the cluster signs with a different one; set IRONCLAD_WEBHOOK_SECRET to the same value everywhere'
      : 'no IRONCLAD_WEBHOOK_SECRET(S): callbacks are signed with a generated secret kept in the data directory');
  }
  const callbacks = createCallbackDispatcher({
    clock, log: logger, allow: callbackAllow, secretFor: webhookSecrets(config.IRONCLAD_WEBHOOK_SECRETS, defaultWebhookSecret),
    maxAttempts: config.IRONCLAD_CALLBACK_MAX_ATTEMPTS, backoffMs: config.IRONCLAD_CALLBACK_BACKOFF_MS, timeoutMs: config.IRONCLAD_CALLBACK_HTTP_TIMEOUT_MS,
    record: async (task, a) => void (await (task.resource_type === 'stack'
      ? stackSystem(task.resource_id, { type: 'RecordCallbackAttempt', ...a }, task.id).catch((err) => logger.error({ err, stack_id: task.resource_id }, 'internal command failed'))
      : system(task.resource_id, { type: 'RecordCallbackAttempt', ...a }, task.id))),
  });

  // NATS (issue 3): with NATS_URL, every stored event is also published to JetStream (IRONCLAD_EVENTS).
  const workAckWaitMs = config.IRONCLAD_WORK_ACK_WAIT_S !== undefined ? config.IRONCLAD_WORK_ACK_WAIT_S * 1000 : (NATS_DEFINITIONS.consumers.workers.ack_wait ?? 60e9) / 1e6;
  const bus: Bus | null = config.NATS_URL ? await createNatsBus({
    servers: config.NATS_URL, log: logger, name: `ironclad ${config.HOST}:${config.PORT}`,
    // commandAckWaitMs: a command pulled by a process that died comes back when its partition is taken over.
    tuning: { ...(config.IRONCLAD_WORK_ACK_WAIT_S !== undefined ? { workAckWaitMs } : {}), commandAckWaitMs: config.IRONCLAD_LEASE_TTL_MS },
  }) : null;
  // The owner of each partition serves its commands (the router above sends them there).
  const host = bus && cluster ? createActorHost({ bus, ownership, log: logger }) : null;
  const retention = { retentionMs: config.IRONCLAD_IDEMPOTENCY_RETENTION_S * 1000, now: () => clock.now() };
  host?.register('node', entityHandler({ kind: 'node', decideLocally: nodes.decideLocally, runtime, store, ...retention }));
  host?.register('stack', entityHandler({ kind: 'stack', decideLocally: stacks.decideLocally, runtime: stackRuntime, store, ...retention }));
  const notifier = bus ? createNotifier({ store, db, bus, nodeOwner: (id) => nodesRM.get(id)?.owner, stackOwner: (id) => stacksRM.get(id)?.owner, log: logger }) : null;

  // Work plane over NATS (issue 3, docs/decisions/0004-cluster.md "Work plane"): the partition owner
  // publishes work orders and arms deadlines and callbacks; every process consumes work orders.
  const strict = (nodeId: string, command: Parameters<typeof nodes.send>[2], causation: string): Promise<unknown> =>
    nodes.send(SYSTEM, nodeId, command, { ...internal, causation_id: causation });
  const workDispatcher = bus ? createWorkDispatcher({
    bus, ownership, clock, log: logger, deadlines, callbacks,
    runningNodes: () => nodesRM.withRunningSteps(), nodesWithDeadlines: () => nodesRM.withDeadlines(), tasksWithPendingCallbacks: () => tasksRM.withPendingCallbacks(),
    runningStacks: () => stacksRM.withPendingWork(),
  }) : null;
  const projectedTo = async (position: string | null): Promise<void> => {
    if (position !== null && !(await projector.waitFor(position, 30_000))) throw new ReadModelLagError(`read models did not reach ${position} within 30 s`);
  };
  const workConsumer = bus ? createWorkConsumer({
    bus, log: logger, concurrency: config.IRONCLAD_WORKERS, heartbeatMs: Math.max(100, Math.floor(workAckWaitMs / 3)),
    drivers, driverNode: (s) => ({ id: s.id, driver_info: openSecrets(s.driver_info, box) }),
    reportStep: async (o, outcome) => void (await strict(o.node_id, { type: 'ReportStepOutcome', op_id: o.op_id, step_id: o.step_id, outcome }, o.step_id)),
    reportPower: async (o, result) => void (await strict(o.node_id, { type: 'ReportPowerOutcome', op_id: o.op_id, step_id: o.step_id, result }, o.step_id)),
    async stateAt(nodeId, position) {
      await projectedTo(position);
      return nodesRM.get(nodeId);
    },
    stacks: {
      async stateAt(stackId, position) {
        await projectedTo(position);
        return stacksRM.get(stackId);
      },
      outcomeOf: (job, signal, heartbeat) => stackConductor.outcomeOf(job, signal, heartbeat),
      report: async (stackId, r) => void (await stackSystem(stackId, { type: 'ReportResourceOutcome', ...r }, r.action_id)),
    },
  }) : null;

  let live = false;
  projector.onBatch((batch) => {
    waiters.notify(batch.tasks.values());
    if (!live) return; // during the start-up catch-up the scan below dispatches from the final state
    if (workDispatcher) return workDispatcher.onBatch(batch); // NATS mode: only the owner's effects
    for (const t of batch.tasks.values()) callbacks.reconcile(t);
    for (const s of batch.nodes.values()) {
      conductor.reconcile(s);
      deadlines.reconcile(s);
    }
  });

  // Stack effects follow the projected stacks, armed by the owner of the stack's partition only
  // (embedded, this process owns everything). With NATS the stack's work orders go over
  // IRONCLAD_WORK (workDispatcher/workConsumer, like node steps); deadlines stay with the owner
  // and an acquired partition's stacks are re-armed below (start()).
  projector.onBatch((batch) => {
    if (!live) return;
    for (const s of batch.stacks.values()) {
      if (!ownership.ownsEntity(s.id)) continue;
      if (!workDispatcher) stackConductor.reconcile(s); // NATS mode: published by workDispatcher.onBatch
      stackDeadlines.reconcile(s);
      if (s.deleted) stacks.releaseName(s).catch((err: unknown) => logger.error({ err, stack_id: s.id }, 'stack name could not be released'));
    }
  });

  const idempotency = cluster?.idempotency ?? createIdempotencyStore(db, {
    retentionMs: config.IRONCLAD_IDEMPOTENCY_RETENTION_S * 1000, abandonAfterMs: 120_000, now: () => clock.now(),
  });
  const backlog = createBacklog({
    clock, limit: config.IRONCLAD_MAX_PENDING, pending: tasksRM.pendingCount, finished: tasksRM.finishedCount, projectedTo: () => projector.position(),
  });
  const app = await buildServer({
    config, nodes, nodesRM, stacks, stacksRM, tasksRM, projector, store, waiters, tokens, ids, logger, idempotency, backlog, callbackAllow,
    metrics: {
      pendingTasks: tasksRM.pendingCount, projectedEvents: projector.eventsApplied, projectionPosition: projector.position,
      cachedActors: runtime.cachedCount, work: workConsumer?.stats ?? conductor.stats,
      ownedPartitions: cluster ? () => ownership.owned().size : undefined,
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
      if (cluster) {
        const l = cluster.leases.status();
        checks['cluster'] = l.joined
          ? `member ${l.member} of ${l.members.length}: partitions [${l.owned.join(',')}] of ${config.IRONCLAD_PARTITIONS}${l.leader.length > 0 ? `, leader of ${l.leader.join(',')}` : ''}${l.unowned.length > 0 ? `, unowned [${l.unowned.join(',')}]` : ''}`
          : 'joining';
      }
      return { ok: live && checks['store'] === 'ok' && (!bus || checks['bus'] === 'ok') && (!cluster || cluster.leases.joined()), checks };
    },
  }, { logger });

  let closed = false;
  let cancelPurge: (() => void) | null = null;
  return {
    app, config, store,
    async start() {
      await projector.start();
      if (cluster) {
        await cluster.leases.start(); // joined: this process holds its share of the partitions
        await host?.start();
        await cluster.names.node.reconcile({
          get: (id) => nodesRM.get(id), allNamed: () => nodesRM.allLive().filter((n) => n.name !== null),
        }, 120_000);
        await cluster.names.stack.reconcile({
          get: (id) => stacksRM.get(id),
          *allNamed() {
            for (let cursor: string | null = null, first = true; first || cursor !== null; first = false) {
              const page = stacksRM.list({}, 500, cursor);
              yield* page.items;
              cursor = page.next_cursor;
            }
          },
        }, 120_000);
      }
      // Singletons follow their leases (embedded: this process leads forever); listen first, then look.
      ownership.onLeader('notifier', (leader) => {
        if (!notifier || closed) return;
        (leader ? notifier.start() : notifier.stop()).catch((err: unknown) => logger.error({ err }, 'notifier hand-over failed'));
      });
      if (ownership.isLeader('notifier')) await notifier?.start();
      if (!cluster) {
        names.reconcile();
        stackNames.reconcile();
      }
      const armStacks = (): void => {
        if (!workDispatcher) for (const s of stacksRM.withPendingWork()) stackConductor.reconcile(s);
        for (const s of stacksRM.withDeadlines()) if (ownership.ownsEntity(s.id)) stackDeadlines.reconcile(s);
      };
      armStacks();
      ownership.onChange((acquired) => void (acquired.length > 0 && !closed && armStacks()));
      if (workDispatcher && workConsumer) {
        workDispatcher.start();
        await workConsumer.start();
      } else {
        for (const s of nodesRM.withRunningSteps()) conductor.reconcile(s);
        for (const s of nodesRM.withDeadlines()) deadlines.reconcile(s);
        for (const t of tasksRM.withPendingCallbacks()) callbacks.reconcile(t);
      }
      live = true;
      ownership.onLeader('power-sync', (leader) => (closed ? undefined : leader ? powerSync.start() : powerSync.stop()));
      if (ownership.isLeader('power-sync')) powerSync.start();
      const purge = (): void => {
        if (ownership.isLeader('purge')) void Promise.resolve(idempotency.purgeExpired()).catch((err: unknown) => logger.warn({ err }, 'idempotency purge failed'));
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
      // Hand the partitions over at once (graceful): stop serving commands, then delete the leases.
      await host?.stop();
      await cluster?.leases.stop();
      await app.close();
      conductor.stop();
      stackConductor.stop();
      stackDeadlines.stop();
      stackRuntime.close();
      workDispatcher?.stop();
      await workConsumer?.stop();
      deadlines.stop();
      callbacks.stop();
      runtime.close();
      await notifier?.stop();
      await bus?.close();
      await cluster?.close();
      await projector.close();
      await store.close();
      eventsDb?.close();
      if (!opts.db) db!.close();
    },
    internals: { cluster, host, stacks, stacksRM, stackConductor, stackDeadlines, stackRuntime, bus, ownership, workDispatcher, workConsumer, notifier, callbacks, idempotency, backlog, nodes, runtime, conductor, deadlines, projector, nodesRM, tasksRM, fake, powerSync, evolveNode },
  };
}
