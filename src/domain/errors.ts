/**
 * The one error registry. Domain code throws these; transports map them once
 * (HTTP: src/http/problem.ts). Codes are stable and documented in the README.
 */
export const ErrorKind = {
  validation: 'validation',
  unauthorized: 'unauthorized',
  forbidden: 'forbidden',
  not_found: 'not_found',
  conflict: 'conflict',
  illegal_state: 'illegal_state',
  precondition: 'precondition',
  too_large: 'too_large',
  unprocessable: 'unprocessable',
  rate_limited: 'rate_limited',
  unavailable: 'unavailable',
  transient: 'transient',
  internal: 'internal',
} as const;
export type ErrorKind = (typeof ErrorKind)[keyof typeof ErrorKind];

/** Every public error code with its kind. Never change a code's meaning; add new ones. */
export const ErrorCodes = {
  validation_failed: ErrorKind.validation,
  unknown_action: ErrorKind.validation,
  malformed_body: ErrorKind.validation,
  unauthorized: ErrorKind.unauthorized,
  forbidden: ErrorKind.forbidden,
  not_found: ErrorKind.not_found,
  method_not_allowed: ErrorKind.illegal_state,
  invalid_state: ErrorKind.illegal_state,
  node_busy: ErrorKind.conflict,
  in_maintenance: ErrorKind.illegal_state,
  queue_full: ErrorKind.conflict,
  name_conflict: ErrorKind.conflict,
  not_cancellable: ErrorKind.illegal_state,
  idempotency_key_in_use: ErrorKind.conflict,
  revision_mismatch: ErrorKind.precondition,
  payload_too_large: ErrorKind.too_large,
  idempotency_key_reused: ErrorKind.unprocessable,
  rate_limited: ErrorKind.rate_limited,
  overloaded: ErrorKind.unavailable,
  not_caught_up: ErrorKind.unavailable,
  internal: ErrorKind.internal,
} as const;
export type ErrorCode = keyof typeof ErrorCodes;

/** Codes that appear in a failed task's `error.code` (not HTTP answers). */
export const TaskErrorCodes = [
  'precondition_failed',
  'driver_error',
  'deadline_expired',
  'cancelled',
  'no_capacity',
  'resource_failed',
] as const;
export type TaskErrorCode = (typeof TaskErrorCodes)[number];

export interface FieldError {
  path: string;
  message: string;
}

/** A domain error: stable code, kind, human detail, optional problem extensions. */
export class IroncladError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly extensions: Record<string, unknown>;
  constructor(code: ErrorCode, detail: string, extensions: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(detail, options);
    this.name = 'IroncladError';
    this.code = code;
    this.kind = ErrorCodes[code];
    this.extensions = extensions;
  }
}

export const errors = {
  validation: (errs: FieldError[], detail = 'The request is not valid.') =>
    new IroncladError('validation_failed', detail, { errors: errs }),
  unknownAction: (action: string, known: readonly string[]) =>
    new IroncladError('unknown_action', `Unknown action "${action}".`, {
      errors: [{ path: 'body.target', message: `must be one of: ${known.join(', ')}` }],
    }),
  notFound: (what: string, id: string) => new IroncladError('not_found', `${what} ${id} was not found.`),
  invalidState: (detail: string, currentState: string | null, allowedActions: readonly string[], ext: Record<string, unknown> = {}) =>
    new IroncladError('invalid_state', detail, { current_state: currentState, allowed_actions: [...allowedActions], ...ext }),
  nodeBusy: (detail: string, blockingTask: unknown, currentState: string) =>
    new IroncladError('node_busy', detail, { blocking_task: blockingTask, current_state: currentState }),
  inMaintenance: (detail: string, currentState: string, allowedActions: readonly string[]) =>
    new IroncladError('in_maintenance', detail, { current_state: currentState, allowed_actions: [...allowedActions] }),
  queueFull: (detail: string, depth: number) => new IroncladError('queue_full', detail, { queue_depth: depth }),
  nameConflict: (name: string) => new IroncladError('name_conflict', `The name "${name}" is already in use.`),
  notCancellable: (detail: string, taskState: string) => new IroncladError('not_cancellable', detail, { task_state: taskState }),
  revisionMismatch: (expected: string, actual: number) =>
    new IroncladError('revision_mismatch', `If-Match ${expected} does not match the current revision ${actual}.`, { current_revision: actual }),
  forbidden: (detail: string) => new IroncladError('forbidden', detail),
  unauthorized: (detail: string) => new IroncladError('unauthorized', detail),
} as const;

/** Optimistic concurrency failure of an event store append (typed, retried by the runtime). */
export class ConcurrencyError extends Error {
  readonly stream: string;
  readonly expected: unknown;
  readonly actual: number | null;
  constructor(stream: string, expected: unknown, actual: number | null) {
    super(`Stream ${stream}: expected revision ${String(expected)}, found ${actual === null ? 'no stream' : actual}`);
    this.name = 'ConcurrencyError';
    this.stream = stream;
    this.expected = expected;
    this.actual = actual;
  }
}
