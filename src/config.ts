/**
 * The environment, parsed once at boot with zod and frozen. Nothing else reads process.env.
 * An invalid value fails the start with every bad key named.
 */
import { z } from 'zod';

const int = (def: number, min = 0) => z.coerce.number().int().min(min).default(def);

const ConfigSchema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: int(8080),
  IRONCLAD_DATA_DIR: z.string().default('./data'),
  /** Events and snapshots in this SQLite file (shared by the processes of one host); default the data dir's ironclad.db. */
  IRONCLAD_EVENT_STORE_FILE: z.string().min(1).optional(),
  /** NATS mode: seconds before an unacknowledged work order (a dead worker's) is delivered again (same value in every process); default deploy/nats (60). */
  IRONCLAD_WORK_ACK_WAIT_S: z.coerce.number().int().min(1).optional(),
  NATS_URL: z.string().optional(),
  /** NATS mode: entities are spread over this many partitions, each leased to one process (same value in every process). */
  IRONCLAD_PARTITIONS: int(16, 1),
  /** NATS mode: a process that stops renewing loses its leases after this long (its partitions are taken over). */
  IRONCLAD_LEASE_TTL_MS: int(10_000, 500),
  /** NATS mode: how long the API waits for the partition owner's answer to a command (then 503 overloaded, reason command_not_confirmed). */
  IRONCLAD_COMMAND_TIMEOUT_MS: int(10_000, 100),
  KURRENTDB_URL: z.string().optional(),
  IRONCLAD_TOKENS: z.string().optional(),
  IRONCLAD_TOKEN_FILE: z.string().optional(),
  IRONCLAD_WEBHOOK_SECRET: z.string().min(1, 'must not be empty (callbacks are signed with it)').optional(),
  IRONCLAD_WEBHOOK_SECRETS: z.string().optional(),
  IRONCLAD_CALLBACK_ALLOW: z.string().optional(),
  IRONCLAD_CALLBACK_MAX_ATTEMPTS: int(7, 1),
  IRONCLAD_CALLBACK_BACKOFF_MS: int(2000, 1),
  IRONCLAD_CALLBACK_HTTP_TIMEOUT_MS: int(10_000, 100),
  IRONCLAD_RATE_LIMIT: int(600, 1),
  IRONCLAD_MAX_PENDING: int(10_000, 1),
  // Load shedding (src/http/load-shedding.ts): 503 `overloaded` while the process is saturated; 0 turns a limit off.
  IRONCLAD_SHED_EVENT_LOOP_DELAY_MS: int(40, 0),
  IRONCLAD_SHED_EVENT_LOOP_UTILIZATION: z.coerce.number().min(0).max(1).default(0),
  IRONCLAD_SHED_HEAP_MB: int(0, 0),
  IRONCLAD_SHED_SAMPLE_MS: int(250, 10),
  IRONCLAD_QUEUE_DEPTH: int(16, 1),
  IRONCLAD_IDEMPOTENCY_RETENTION_S: int(86_400, 1),
  IRONCLAD_CALLBACK_TIMEOUT_S: int(1800, 1),
  IRONCLAD_STEP_TIMEOUT_S: int(3600, 1),
  IRONCLAD_HOLD_TIMEOUT_S: int(86_400, 1),
  /** `timeout_s` of a stack created without one (docs/stacks.md). */
  IRONCLAD_STACK_TIMEOUT_S: int(3600, 1),
  IRONCLAD_POWER_SYNC_S: int(60, 0),
  IRONCLAD_POWER_SYNC_FAILURES: int(3, 1),
  IRONCLAD_POWER_SYNC_CONCURRENCY: int(8, 1),
  IRONCLAD_SECRET_KEY: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters').optional(),
  IRONCLAD_SQLITE_SYNC: z.enum(['normal', 'full']).default('normal'),
  IRONCLAD_WORKERS: int(64, 1),
  IRONCLAD_BODY_LIMIT: int(1_048_576, 1024),
  IRONCLAD_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export type Config = Readonly<z.infer<typeof ConfigSchema>>;

export class ConfigError extends Error {}

/** Parses the environment; throws ConfigError naming every bad key. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const res = ConfigSchema.safeParse(env);
  if (!res.success) {
    const lines = res.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return Object.freeze(res.data);
}
