/** What the HTTP layer is given by the composition root (src/main.ts). */
import type { Config } from '../config.js';
import type { NodeService } from '../app/nodes/node-service.js';
import type { NodesReadModel } from '../app/read-models/nodes.js';
import type { StacksReadModel } from '../app/read-models/stacks.js';
import type { StackService } from '../app/stacks/stack-service.js';
import type { TasksReadModel } from '../app/read-models/tasks.js';
import type { Projector } from '../app/projector.js';
import type { TaskWaiters } from '../app/task-waiters.js';
import type { EventStore } from '../ports/event-store.js';
import type { Ids } from '../ports/clock.js';
import type { Logger } from '../ports/logger.js';
import type { TokenTable } from './auth.js';
import type { IdempotencyStore } from '../app/idempotency-store.js';
import type { Backlog } from '../app/backlog.js';
import type { CallbackAllowList } from '../app/callbacks/allow-list.js';
import type { MetricSources } from './metrics.js';

export interface HttpDeps {
  config: Config;
  nodes: NodeService;
  nodesRM: NodesReadModel;
  stacks: StackService;
  stacksRM: StacksReadModel;
  tasksRM: TasksReadModel;
  projector: Projector;
  store: EventStore;
  waiters: TaskWaiters;
  tokens: TokenTable;
  ids: Ids;
  logger: Logger;
  idempotency: IdempotencyStore;
  backlog: Backlog;
  callbackAllow: CallbackAllowList;
  metrics: MetricSources;
  /** Extra readiness checks (store and bus reachable). */
  ready(): Promise<{ ok: boolean; checks: Record<string, string> }>;
}
