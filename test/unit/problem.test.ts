/**
 * Errors become RFC 9457 problems in one place (src/http/problem.ts). Every code of the registry
 * maps to the status api.md gives it, and the registry is exactly api.md's list.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCodes, ErrorKind, errors, IroncladError, TaskErrorCodes, type ErrorCode } from '../../src/domain/errors.js';
import { problemOf, sendProblem, STATUS, toProblem } from '../../src/http/problem.js';

// A hand copy of api.md "Conventions → Error codes" (the complete list, with statuses).
const API_MD_ERROR_CODES: Record<string, number> = {
  validation_failed: 400, unknown_action: 400, malformed_body: 400, unauthorized: 401,
  forbidden: 403, not_found: 404, method_not_allowed: 405, invalid_state: 409, node_busy: 409,
  in_maintenance: 409, queue_full: 409, name_conflict: 409, not_cancellable: 409,
  idempotency_key_in_use: 409, revision_mismatch: 412, payload_too_large: 413,
  idempotency_key_reused: 422, rate_limited: 429, overloaded: 503, not_caught_up: 503,
  internal: 500,
};
// api.md: "In a failed task's error.code: ...".
const API_MD_TASK_ERROR_CODES = ['precondition_failed', 'driver_error', 'deadline_expired', 'cancelled', 'no_capacity', 'resource_failed'];

const CODES = Object.keys(ErrorCodes) as ErrorCode[];

function fakeRequest(url = '/v1/nodes/x') {
  const log = { error: vi.fn() };
  return { req: { url, log, headers: {}, routeOptions: { bodyLimit: 1024 } } as unknown as FastifyRequest, log };
}

describe('the error registry', () => {
  it('holds exactly the error codes api.md lists', () => {
    expect([...CODES].sort()).toEqual(Object.keys(API_MD_ERROR_CODES).sort());
  });

  it('holds exactly the task error codes api.md lists', () => {
    expect([...TaskErrorCodes].sort()).toEqual([...API_MD_TASK_ERROR_CODES].sort());
  });

  it('gives every code a known kind', () => {
    for (const code of CODES) expect(Object.values(ErrorKind)).toContain(ErrorCodes[code]);
  });

  it('uses stable snake_case codes', () => {
    for (const code of [...CODES, ...TaskErrorCodes]) expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/);
  });
});

describe('status codes', () => {
  it('maps exactly the registry codes', () => {
    expect(Object.keys(STATUS).sort()).toEqual([...CODES].sort());
  });

  it.each(Object.entries(API_MD_ERROR_CODES))('%s answers %i', (code, status) => {
    expect(STATUS[code as ErrorCode]).toBe(status);
    expect(problemOf(code as ErrorCode, 'x').status).toBe(status);
  });
});

describe('problem bodies', () => {
  it.each(CODES)('%s has type, title, status, detail and code', (code) => {
    const p = problemOf(code, 'what happened');
    expect(p).toMatchObject({ status: STATUS[code], detail: 'what happened', code });
    expect(p.type).toMatch(/^https:\/\/\S+$/);
    expect(p.title).toEqual(expect.any(String));
    expect(p.title.length).toBeGreaterThan(0);
  });

  it('gives every code its own type URI', () => {
    const types = CODES.map((c) => problemOf(c, 'x').type);
    expect(new Set(types).size).toBe(CODES.length);
  });

  it('carries extensions and the instance beside the standard members', () => {
    const p = problemOf('queue_full', 'full', { queue_depth: 16 }, '/v1/nodes/a/states/provision');
    expect(p).toEqual({
      type: expect.any(String), title: expect.any(String), status: 409, detail: 'full', code: 'queue_full',
      instance: '/v1/nodes/a/states/provision', queue_depth: 16,
    });
    expect(problemOf('internal', 'x')).not.toHaveProperty('instance');
  });

  it('turns a domain error into its problem with its extensions', () => {
    const { req, log } = fakeRequest('/v1/nodes/n1/states/provision');
    const busy = errors.nodeBusy('busy', { id: 't1', action: 'deploy', state: 'running' }, 'deploying');
    expect(toProblem(busy, req)).toMatchObject({
      status: 409, code: 'node_busy', detail: 'busy', instance: '/v1/nodes/n1/states/provision',
      blocking_task: { id: 't1', action: 'deploy' }, current_state: 'deploying',
    });
    expect(toProblem(errors.invalidState('no', 'active', ['rebuild', 'rescue']), req))
      .toMatchObject({ status: 409, code: 'invalid_state', current_state: 'active', allowed_actions: ['rebuild', 'rescue'] });
    expect(toProblem(errors.validation([{ path: 'body.name', message: 'bad' }, { path: 'body.x', message: 'unknown field' }]), req))
      .toMatchObject({ status: 400, code: 'validation_failed', errors: [{ path: 'body.name' }, { path: 'body.x' }] });
    expect(toProblem(errors.revisionMismatch('3', 5), req)).toMatchObject({ status: 412, current_revision: 5 });
    expect(log.error).not.toHaveBeenCalled();
  });

  it('keeps the code an IroncladError was built with, for every code', () => {
    const { req } = fakeRequest();
    for (const code of CODES) expect(toProblem(new IroncladError(code, 'x'), req)).toMatchObject({ code, status: STATUS[code] });
  });

  it('answers 500 internal for an unexpected error, logs it, and does not leak its message', () => {
    const { req, log } = fakeRequest();
    const p = toProblem(new Error('password=hunter2 at db.ts:12'), req);
    expect(p).toMatchObject({ status: 500, code: 'internal' });
    expect(JSON.stringify(p)).not.toContain('hunter2');
    expect(log.error).toHaveBeenCalledOnce();
  });

  it('maps fastify body errors to malformed_body and payload_too_large', () => {
    const { req } = fakeRequest();
    const fe = (code: string, statusCode: number) => Object.assign(new Error(code), { code, statusCode });
    expect(toProblem(fe('FST_ERR_CTP_INVALID_JSON_BODY', 400), req)).toMatchObject({ status: 400, code: 'malformed_body' });
    expect(toProblem(fe('FST_ERR_CTP_EMPTY_JSON_BODY', 400), req)).toMatchObject({ status: 400, code: 'malformed_body' });
    expect(toProblem(fe('FST_ERR_CTP_INVALID_MEDIA_TYPE', 415), req)).toMatchObject({ status: 400, code: 'malformed_body' });
    expect(toProblem(fe('FST_ERR_CTP_BODY_TOO_LARGE', 413), req)).toMatchObject({ status: 413, code: 'payload_too_large' });
  });

  it('sends problems as application/problem+json with their status', () => {
    const calls: string[] = [];
    const reply = {
      code(n: number) { calls.push(`code ${n}`); return reply; },
      type(t: string) { calls.push(`type ${t}`); return reply; },
      send(b: unknown) { calls.push(`send ${(b as { code: string }).code}`); return reply; },
    };
    sendProblem(reply as unknown as FastifyReply, problemOf('not_found', 'gone'));
    expect(calls).toEqual(['code 404', 'type application/problem+json', 'send not_found']);
  });
});
