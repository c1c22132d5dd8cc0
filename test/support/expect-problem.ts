/** Checks an RFC 9457 problem answer: status, code, the media type, and the headers every answer has. */
import type { LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';

export function expectProblem(r: LightMyRequestResponse, status: number, code: string): Record<string, any> {
  expect(r.statusCode, r.body).toBe(status);
  expect(r.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(r.headers['x-request-id']).toEqual(expect.any(String));
  expect(r.headers['x-content-type-options']).toBe('nosniff');
  const b = r.json();
  expect(b).toMatchObject({
    type: expect.stringMatching(/^https?:\/\/\S+$/), title: expect.stringMatching(/\S/), status, detail: expect.stringMatching(/\S/), code,
  });
  return b;
}
