/**
 * The one place errors become HTTP answers: RFC 9457 application/problem+json with a stable
 * `code`. Domain errors carry a code; fastify/zod errors are translated here too.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { IroncladError, type ErrorCode, type FieldError } from '../domain/errors.js';

export const STATUS: Record<ErrorCode, number> = {
  validation_failed: 400, unknown_action: 400, malformed_body: 400, unauthorized: 401, forbidden: 403,
  not_found: 404, method_not_allowed: 405, invalid_state: 409, node_busy: 409, in_maintenance: 409,
  queue_full: 409, name_conflict: 409, not_cancellable: 409, idempotency_key_in_use: 409,
  revision_mismatch: 412, payload_too_large: 413, idempotency_key_reused: 422, rate_limited: 429,
  overloaded: 503, not_caught_up: 503, internal: 500,
};

const TITLES: Record<ErrorCode, string> = {
  validation_failed: 'The request is not valid', unknown_action: 'Unknown action', malformed_body: 'Malformed body',
  unauthorized: 'Authentication required', forbidden: 'Forbidden', not_found: 'Not found',
  method_not_allowed: 'Method not allowed', invalid_state: 'Not allowed in the current state', node_busy: 'Node busy',
  in_maintenance: 'Node in maintenance', queue_full: 'Queue full', name_conflict: 'Name already in use',
  not_cancellable: 'Task cannot be cancelled', idempotency_key_in_use: 'Idempotency key in use',
  revision_mismatch: 'Revision mismatch', payload_too_large: 'Payload too large',
  idempotency_key_reused: 'Idempotency key reused with another request', rate_limited: 'Rate limited',
  overloaded: 'Overloaded', not_caught_up: 'Read models not caught up', internal: 'Internal error',
};

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  [k: string]: unknown;
}

export function problemOf(code: ErrorCode, detail: string, extensions: Record<string, unknown> = {}, instance?: string): ProblemBody {
  return {
    type: `https://ironclad.dev/problems/${code.replace(/_/g, '-')}`,
    title: TITLES[code], status: STATUS[code], detail, code, ...(instance ? { instance } : {}), ...extensions,
  };
}

function fieldErrors(err: FastifyError): FieldError[] {
  const where = err.validationContext ?? 'body';
  return (err.validation ?? []).map((v) => {
    // fastify-type-provider-zod puts the zod issue's code in `keyword` and its other fields in `params`.
    const p = (v as { keyword?: string; instancePath?: string; params?: { keys?: unknown; issue?: { path?: PropertyKey[]; keys?: string[]; code?: string } } });
    const issue = p.params?.issue;
    const base = issue?.path ? issue.path.map(String) : (p.instancePath ?? '').split('/').filter(Boolean);
    const unknownKeys = issue?.code === 'unrecognized_keys' ? issue.keys : p.keyword === 'unrecognized_keys' ? p.params?.keys : undefined;
    if (Array.isArray(unknownKeys) && unknownKeys.length > 0) {
      return unknownKeys.map((k) => ({ path: [where, ...base, String(k)].join('.'), message: 'unknown field' }));
    }
    return [{ path: [where, ...base].join('.'), message: v.message ?? 'invalid' }];
  }).flat();
}

/** Translates any thrown error into a problem body (and logs the unexpected ones). */
export function toProblem(err: unknown, req: FastifyRequest): ProblemBody {
  const instance = req.url;
  if (err instanceof IroncladError) return problemOf(err.code, err.message, err.extensions, instance);
  const fe = err as FastifyError;
  if (hasZodFastifySchemaValidationErrors(fe) || fe.validation) {
    const errs = fieldErrors(fe);
    return problemOf('validation_failed', `${errs.length} invalid field${errs.length === 1 ? '' : 's'}: ${errs.map((e) => e.path).join(', ')}`, { errors: errs }, instance);
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problemOf('payload_too_large', `The body is larger than the limit of ${req.routeOptions.bodyLimit ?? 'the server'} bytes.`, {}, instance);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return problemOf('malformed_body', `The body is not valid JSON: ${fe.message}`, {}, instance);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problemOf('malformed_body', `Unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}; send application/json.`, {}, instance);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return problemOf('malformed_body', 'The Content-Length does not match the body.', {}, instance);
    default:
      break;
  }
  if (fe instanceof SyntaxError) return problemOf('malformed_body', `The body is not valid JSON: ${fe.message}`, {}, instance);
  if (fe.statusCode === 429) return problemOf('rate_limited', fe.message, { retry_after_s: (fe as { retryAfterS?: number }).retryAfterS ?? 60 }, instance);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return problemOf('malformed_body', fe.message, {}, instance);
  }
  req.log.error({ err }, 'unhandled error');
  return problemOf('internal', 'An internal error occurred; it has been logged with this request id.', {}, instance);
}

export function sendProblem(reply: FastifyReply, p: ProblemBody): FastifyReply {
  return reply.code(p.status).type('application/problem+json').send(p);
}
