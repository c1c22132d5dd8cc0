/**
 * zod schemas: the only source for request validation, response shapes and /openapi.json.
 * Request bodies are strict (unknown fields are rejected with their paths).
 */
import { z } from 'zod';
import { API_VERBS } from '../../machines/node/node.model.js';

const Json = z.record(z.string(), z.unknown());
const NullableString = z.string().nullable();

export const Problem = z.object({
  type: z.string(), title: z.string(), status: z.number().int(), detail: z.string(), code: z.string(),
  instance: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  current_state: z.string().nullable().optional(),
  allowed_actions: z.array(z.string()).optional(),
  blocking_task: Json.nullable().optional(),
}).loose().meta({ id: 'Problem', description: 'RFC 9457 problem details; `code` is stable (see README).' });

export const TaskSummary = z.object({
  id: z.string(), action: z.string(), state: z.string(), created_at: z.string(), started_at: NullableString,
}).meta({ id: 'TaskSummary' });

export const Task = z.object({
  id: z.string(),
  action: z.string(),
  resource_type: z.enum(['node', 'stack']),
  resource_id: z.string(),
  state: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']),
  coalesced_count: z.number().int(),
  coalesced: z.boolean().optional().describe('true when this answer re-used an identical pending task'),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  callback: z.object({
    url: z.string(), state: z.enum(['pending', 'delivered', 'failed']), attempts: z.number().int(),
    next_attempt_at: NullableString, last_error: NullableString,
  }).nullable(),
  created_at: z.string(),
  started_at: NullableString,
  finished_at: NullableString,
  requested_by: z.string(),
  idempotency_key: NullableString,
  params: Json,
}).meta({ id: 'Task' });

export const Node = z.object({
  id: z.string(), name: NullableString, owner: z.string(), driver: z.enum(['fake', 'ipmi']), driver_info: Json,
  resource_class: z.string(), properties: Json, traits: z.array(z.string()),
  provision_state: z.string(), target_provision_state: NullableString,
  power_state: z.enum(['power on', 'power off']).nullable(), target_power_state: NullableString,
  maintenance: z.boolean(), maintenance_reason: NullableString, fault: NullableString, last_error: NullableString,
  allocation: z.object({ stack_id: z.string(), resource_name: z.string() }).nullable(),
  current_task: TaskSummary.nullable(), queued_tasks: z.array(TaskSummary), allowed_actions: z.array(z.string()),
  revision: z.number().int(), created_at: NullableString, updated_at: NullableString, provision_updated_at: NullableString,
}).meta({ id: 'Node' });

export const EventEnvelope = z.object({
  id: z.string(), type: z.string(), entity_type: z.string(), entity_id: z.string(), revision: z.number().int(),
  position: z.string(), time: z.string(), data: Json,
  metadata: z.object({
    task_id: NullableString, principal: NullableString, request_id: NullableString, correlation_id: NullableString, causation_id: NullableString,
  }),
}).meta({ id: 'Event' });

export const page = <T extends z.ZodTypeAny>(item: T) => z.object({ items: z.array(item), next_cursor: z.string().nullable() });

const Name = z.string().min(1).max(255).regex(/^[A-Za-z0-9._~-]+$/, 'letters, digits, ".", "_", "~" and "-" only')
  .refine((n) => !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(n), 'must not look like a node id (uuid)');
const Properties = z.object({
  cpus: z.number().int().positive().optional(), memory_mb: z.number().int().positive().optional(), local_gb: z.number().int().nonnegative().optional(),
}).catchall(z.unknown());
const Trait = z.string().min(1).max(255);

export const CreateNodeBody = z.strictObject({
  name: Name.optional(),
  driver: z.enum(['fake', 'ipmi']),
  driver_info: Json.default({}),
  resource_class: z.string().min(1).max(80),
  properties: Properties.optional(),
  traits: z.array(Trait).max(50).optional(),
  owner: z.string().min(1).max(80).optional(),
}).superRefine((b, ctx) => {
  if (b.driver === 'ipmi') {
    for (const k of ['ipmi_address', 'ipmi_username', 'ipmi_password']) {
      if (typeof b.driver_info[k] !== 'string') ctx.addIssue({ code: 'custom', path: ['driver_info', k], message: `required (a string) for the ipmi driver` });
    }
  }
});

export const PatchNodeBody = z.strictObject({
  name: Name.nullable().optional(),
  driver_info: Json.optional(),
  properties: Properties.optional(),
  traits: z.array(Trait).max(50).optional(),
  resource_class: z.string().min(1).max(80).optional(),
});

const CallbackUrl = z.url({ protocol: /^https?$/ }).max(2048);
const OnBusy = z.enum(['reject', 'queue']);

export const ProvisionBody = z.strictObject({
  target: z.string().min(1).describe(`one of: ${Object.keys(API_VERBS).join(', ')}`),
  on_busy: OnBusy.optional(),
  callback_url: CallbackUrl.optional(),
  clean_steps: z.array(Json).optional(),
  deploy_steps: z.array(Json).optional(),
  service_steps: z.array(Json).optional(),
  configdrive: z.union([z.string(), Json]).optional(),
  rescue_password: z.string().optional(),
});

export const PowerBody = z.strictObject({
  target: z.enum(['power on', 'power off', 'rebooting', 'soft rebooting', 'soft power off']),
  timeout: z.number().int().positive().max(86_400).optional(),
  on_busy: OnBusy.optional(),
  callback_url: CallbackUrl.optional(),
});

export const MaintenanceBody = z.strictObject({ reason: z.string().max(1000).optional() });
export const HeartbeatBody = z.strictObject({ status: z.enum(['resume', 'done', 'fail']), message: z.string().max(4000).optional() });

export const IdParams = z.strictObject({ id: z.string().min(1).max(255) });
export const RevisionParams = z.strictObject({ id: z.string().min(1).max(255), revision: z.coerce.number().int().min(0) });

const Limit = z.coerce.number().int().min(1).max(1000).default(100);
const Bool = z.enum(['true', 'false']).transform((v) => v === 'true');
const MinPosition = z.string().regex(/^\d+$/).optional();

export const NodeListQuery = z.strictObject({
  limit: Limit, cursor: z.string().optional(), provision_state: z.string().optional(), resource_class: z.string().optional(),
  maintenance: Bool.optional(), owner: z.string().optional(), name: z.string().optional(), has_pending: Bool.optional(),
  min_position: MinPosition,
});
export const TaskListQuery = z.strictObject({
  limit: Limit, cursor: z.string().optional(), resource_id: z.string().optional(), resource_type: z.enum(['node', 'stack']).optional(),
  state: z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']).optional(), action: z.string().optional(),
  since: z.iso.datetime().optional(), min_position: MinPosition,
});
export const HistoryQuery = z.strictObject({
  from_revision: z.coerce.number().int().min(0).default(0), limit: Limit, min_position: MinPosition,
});
export const ReadQuery = z.strictObject({ min_position: MinPosition });

/** Problem answers every authenticated route may give (documented once, used by every route). */
export const commonErrors = { 400: Problem, 401: Problem, 403: Problem, 404: Problem, 409: Problem, 413: Problem, 422: Problem, 429: Problem, 503: Problem };

/** The conventions of api.md, in words, for the OpenAPI description of write routes. */
export const WRITE_CONVENTIONS = [
  'Headers: `Idempotency-Key` (same key + same request within 24 h → the stored answer with `Idempotent-Replayed: true`;',
  'different request → 422 `idempotency_key_reused`; still running → 409 `idempotency_key_in_use`).',
  '`Prefer: wait=N` (N ≤ 60) holds the answer until the task is terminal (200) or N s pass (202); `Preference-Applied` echoes it.',
  'Every answer that changed something carries `Ironclad-Position`; send it back on a GET (or `?min_position=`) to read your write.',
  '429 `rate_limited` and 503 `overloaded` carry `Retry-After`.',
].join(' ');
