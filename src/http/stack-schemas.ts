/** zod schemas of the stack routes (api.md "Stacks"): requests, the stack view, OpenAPI. */
import { z } from 'zod';
import { STACK_ACTION_VERBS } from '../../machines/stack/stack.model.js';

const Json = z.record(z.string(), z.unknown());
const NullableString = z.string().nullable();
const CallbackUrl = z.url({ protocol: /^https?$/ }).max(2048);

const StackName = z.string().min(1).max(255).regex(/^[A-Za-z][A-Za-z0-9._-]*$/, 'a letter, then letters, digits, ".", "_" and "-"');

/** A template as a JSON object, or as JSON / YAML text (validated by the stack core, not here). */
export const TemplateInput = z.union([Json, z.string().min(1)]).describe(
  'The template: `{resources: {<name>: {type, properties?, depends_on?}}, outputs?: {<name>: {value}}}` as a JSON object, '
  + 'or the same as JSON/YAML text. A cycle, an unknown type, a dangling reference or a bad property → 400 `validation_failed` naming it.',
);
const TimeoutS = z.int().min(1).max(7 * 86_400).describe('stack timeout in seconds (default 3600; an update without it keeps the stack\'s)');

export const CreateStackBody = z.strictObject({
  name: StackName,
  template: TemplateInput,
  timeout_s: TimeoutS.optional(),
  rollback_on_failure: z.boolean().optional().describe('roll back to the last good template when the operation fails (default false)'),
  callback_url: CallbackUrl.optional(),
  owner: z.string().min(1).max(80).optional().describe('admin only'),
});

export const UpdateStackBody = z.strictObject({
  template: TemplateInput,
  timeout_s: TimeoutS.optional(),
  rollback_on_failure: z.boolean().optional(),
  callback_url: CallbackUrl.optional(),
});

export const DeleteStackBody = z.strictObject({ callback_url: CallbackUrl.optional() });

export const StackActionBody = z.strictObject({
  action: z.string().min(1).describe(`one of: ${STACK_ACTION_VERBS.join(', ')}`),
  callback_url: CallbackUrl.optional(),
});

export const SignalBody = z.strictObject({
  status: z.enum(['complete', 'fail']),
  reason: z.string().max(4000).optional(),
});

export const SignalParams = z.strictObject({ id: z.string().min(1).max(255), name: z.string().min(1).max(255) });

export const StackListQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().optional(),
  name: z.string().optional(),
  status: z.string().optional(),
  owner: z.string().optional(),
  show_deleted: z.enum(['true', 'false']).transform((v) => v === 'true').optional().describe('include DELETE_COMPLETE stacks (default false)'),
  min_position: z.string().regex(/^\d+$/).optional(),
});

export const StackResource = z.object({
  name: z.string(), record_id: z.string(), type: z.string(), status: z.string(), status_reason: z.string(),
  physical_id: NullableString, attributes: Json, requires: z.array(z.string()),
}).meta({ id: 'StackResource' });

/** A template as stored (normalised: every resource has properties and depends_on). */
export const StoredTemplate = z.object({
  resources: z.record(z.string(), z.object({ type: z.string(), properties: Json, depends_on: z.array(z.string()).readonly() })),
  outputs: z.record(z.string(), z.object({ value: z.unknown(), description: z.string().optional() })),
}).meta({ id: 'StackTemplate' });

export const Stack = z.object({
  id: z.string(), name: NullableString, owner: z.string(),
  status: z.string().describe('{CREATE,UPDATE,DELETE,ROLLBACK}_{IN_PROGRESS,COMPLETE,FAILED}'),
  status_reason: NullableString, template: StoredTemplate.nullable(), timeout_s: z.number().int(), rollback_on_failure: z.boolean(),
  resources: z.array(StackResource).describe('one entry per existing record, old versions being replaced or deleted included'),
  outputs: Json, allowed_actions: z.array(z.string()), revision: z.number().int(), created_at: NullableString, updated_at: NullableString,
}).meta({ id: 'Stack' });
