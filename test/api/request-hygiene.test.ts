/**
 * Request hygiene (api.md "Conventions"): bodies over IRONCLAD_BODY_LIMIT, malformed JSON, wrong
 * content types, unknown fields, unknown routes and wrong methods all get an RFC 9457
 * `application/problem+json` answer with type, title, status, detail and a stable code.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { expectProblem } from '../support/expect-problem.js';
import { createHarness, type Harness } from '../support/harness.js';

const BODY_LIMIT = 2048;


const paths = (b: Record<string, any>): string[] => (b['errors'] as { path: string }[]).map((e) => e.path).sort();

describe('request hygiene', () => {
  let h: Harness;
  beforeEach(async () => {
    h = await createHarness({ IRONCLAD_BODY_LIMIT: String(BODY_LIMIT) });
  });
  afterEach(async () => h.close());

  const node = (extra: Record<string, unknown> = {}) => ({ driver: 'fake', resource_class: 'baremetal', ...extra });

  describe('413 payload_too_large', () => {
    it('refuses a body over IRONCLAD_BODY_LIMIT and creates nothing', async () => {
      const big = JSON.stringify(node({ driver_info: { pad: 'x'.repeat(BODY_LIMIT) } }));
      expect(Buffer.byteLength(big)).toBeGreaterThan(BODY_LIMIT);
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: big, headers: { 'content-type': 'application/json' } });
      const b = expectProblem(r, 413, 'payload_too_large');
      expect(b['detail']).toContain(String(BODY_LIMIT));
      await h.settle();
      expect((await h.req({ method: 'GET', url: '/v1/nodes' })).json().items).toEqual([]);
    });

    it('accepts a body just under the limit', async () => {
      const pad = 'x'.repeat(BODY_LIMIT - 200);
      const body = JSON.stringify(node({ driver_info: { pad } }));
      expect(Buffer.byteLength(body)).toBeLessThanOrEqual(BODY_LIMIT);
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: body, headers: { 'content-type': 'application/json' } });
      expect(r.statusCode, r.body).toBe(201);
    });

    it('applies to PUT and PATCH bodies too', async () => {
      const id = await h.enroll();
      const pad = 'x'.repeat(BODY_LIMIT);
      expectProblem(await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { driver_info: { pad } } }), 413, 'payload_too_large');
      expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/provision`, payload: { target: 'manage', configdrive: pad } }), 413, 'payload_too_large');
    });
  });

  describe('400 malformed_body', () => {
    it('answers malformed JSON with malformed_body', async () => {
      for (const payload of ['{"driver": "fake",', '{driver: fake}', 'not json', '{"a":1}}']) {
        const r = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: { 'content-type': 'application/json' } });
        expect(expectProblem(r, 400, 'malformed_body')['detail'], payload).toMatch(/JSON/);
      }
    });

    it('answers an empty JSON body with malformed_body', async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: '', headers: { 'content-type': 'application/json' } });
      expectProblem(r, 400, 'malformed_body');
    });

    it('answers a body of another content type with a 400 problem naming the type', async () => {
      for (const type of ['text/plain', 'application/xml', 'application/x-www-form-urlencoded']) {
        const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: 'driver=fake&resource_class=x', headers: { 'content-type': type } });
        const b = expectProblem(r, 400, 'malformed_body');
        expect(b['detail'], type).toContain(type);
        expect(b['detail']).toContain('application/json');
      }
      const id = await h.enroll();
      expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: 'power on', headers: { 'content-type': 'text/plain' } }), 400, 'malformed_body');
    });

    it('accepts application/json with a charset parameter', async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: JSON.stringify(node()), headers: { 'content-type': 'application/json; charset=utf-8' } });
      expect(r.statusCode, r.body).toBe(201);
    });

    it('answers a JSON body that is not an object with validation_failed', async () => {
      for (const payload of ['[]', '"x"', '42', 'null']) {
        const r = await h.req({ method: 'POST', url: '/v1/nodes', payload, headers: { 'content-type': 'application/json' } });
        expect(paths(expectProblem(r, 400, 'validation_failed')), payload).toEqual(['body']);
      }
    });
  });

  describe('400 validation_failed for unknown fields', () => {
    it('lists every unknown field with its path, top level and nested', async () => {
      const r = await h.req({ method: 'POST', url: '/v1/nodes', payload: node({ colour: 'red', size: 2 }) });
      const b = expectProblem(r, 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.colour', 'body.size']);
      for (const e of b['errors']) expect(e.message).toMatch(/unknown/i);
      expect(b['detail']).toContain('body.colour');
    });

    it('rejects unknown fields in command bodies, next to other bad fields', async () => {
      const id = await h.enroll();
      let b = expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/power`, payload: { target: 'warp', force: true } }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.force', 'body.target']);
      b = expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/states/provision`, payload: { target: 'manage', when: 'now' } }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.when']);
      b = expectProblem(await h.req({ method: 'PATCH', url: `/v1/nodes/${id}`, payload: { provision_state: 'active' } }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.provision_state']);
      b = expectProblem(await h.req({ method: 'PUT', url: `/v1/nodes/${id}/maintenance`, payload: { reason: 'x', until: 'later' } }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['body.until']);
      expect((await h.node(id)).maintenance).toBe(false);
    });

    it('rejects unknown query parameters on lists with their paths', async () => {
      const b = expectProblem(await h.req({ method: 'GET', url: '/v1/nodes?colour=red&limit=5' }), 400, 'validation_failed');
      expect(paths(b)).toEqual(['querystring.colour']);
      const t = expectProblem(await h.req({ method: 'GET', url: '/v1/tasks?sort=asc' }), 400, 'validation_failed');
      expect(paths(t)).toEqual(['querystring.sort']);
    });
  });

  describe('404 and 405', () => {
    it('answers unknown routes with 404 not_found', async () => {
      for (const [method, url] of [['GET', '/v1/nope'], ['GET', '/v2/nodes'], ['POST', '/v1/nodes/x/y/z'], ['GET', '/'], ['DELETE', '/v1/widgets/1']] as const) {
        const b = expectProblem(await h.req({ method, url }), 404, 'not_found');
        expect(b['detail'], url).toContain(url);
      }
    });

    it('answers a known path with a wrong method with 405 method_not_allowed and Allow', async () => {
      const id = await h.enroll();
      const cases: [string, string, string[]][] = [
        ['DELETE', '/v1/nodes', ['GET', 'POST']],
        ['PUT', '/v1/nodes', ['GET', 'POST']],
        ['POST', `/v1/nodes/${id}`, ['DELETE', 'GET', 'PATCH']],
        ['GET', `/v1/nodes/${id}/states/provision`, ['PUT']],
        ['POST', `/v1/nodes/${id}/states/power`, ['PUT']],
        ['DELETE', '/v1/tasks', ['GET']],
        ['GET', `/v1/tasks/${id}/cancel`, ['POST']],
        ['POST', '/healthz', ['GET']],
      ];
      for (const [method, url, allowed] of cases) {
        const r = await h.req({ method: method as 'GET', url, ...(method === 'GET' || method === 'DELETE' ? {} : { payload: {} }) });
        const b = expectProblem(r, 405, 'method_not_allowed');
        const allow = String(r.headers['allow']).split(/,\s*/);
        for (const m of allowed) expect(allow, `${method} ${url}`).toContain(m);
        expect(allow).not.toContain(method);
        expect(b['detail']).toContain(method);
      }
      // The refused methods did nothing.
      expect((await h.node(id)).provision_state).toBe('enroll');
    });
  });
});
