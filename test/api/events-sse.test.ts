import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';
import { waitFor } from '../support/wait-for.js';

interface SseEvent {
  id: string;
  event: string;
  data: any;
}

/** Opens an SSE stream over real HTTP and collects parsed events until closed. */
async function openStream(url: string, headers: Record<string, string>) {
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  const got: SseEvent[] = [];
  const done = (async () => {
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let buf = '';
    try {
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) return;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const f: Record<string, string> = {};
          for (const line of block.split('\n')) {
            const m = /^(\w+): ?(.*)$/.exec(line);
            if (m) f[m[1]!] = m[2]!;
          }
          if (f['data']) got.push({ id: f['id']!, event: f['event']!, data: JSON.parse(f['data']) });
        }
      }
    } catch {
      /* aborted */
    }
  })();
  return { res, got, close: async () => { ac.abort(); await done; } };
}

describe('GET /v1/events (Server-Sent Events)', () => {
  let h: Harness;
  let base: string;
  beforeEach(async () => {
    h = await createHarness({ IRONCLAD_TOKENS: 'ta=acme:member,tb=globex:member,tadm=ops:admin' });
    base = await h.ic.app.listen({ host: '127.0.0.1', port: 0 });
  });
  afterEach(async () => h.close());

  it('starts live, streams only the caller tenant\'s events in log order, and resumes from Last-Event-ID without gaps or duplicates', async () => {
    const before = await h.enroll({}, 'ta');
    const s1 = await openStream(`${base}/v1/events`, { authorization: 'Bearer ta' });
    expect(s1.res.status).toBe(200);
    expect(s1.res.headers.get('content-type')).toContain('text/event-stream');
    expect(s1.res.headers.get('x-content-type-options')).toBe('nosniff'); // helmet's headers survive the hijack
    expect(s1.res.headers.get('x-request-id')).toBeTruthy();
    const a = await h.enroll({ name: 'a1' }, 'ta');
    const b = await h.enroll({ name: 'b1' }, 'tb');
    await h.provision(a, 'manage', {}, 'ta');
    await h.driveUntil(a, 'manageable', { token: 'ta' });
    await waitFor(() => s1.got.some((e) => e.event === 'TaskFinished'), { what: 'TaskFinished over SSE' });
    await s1.close();
    expect(s1.got.every((e) => e.data.entity_id === a)).toBe(true); // not `before` (earlier) and not globex's b
    expect(s1.got.map((e) => e.event).slice(0, 2)).toEqual(['NodeEnrolled', 'TaskCreated']);
    const positions = s1.got.map((e) => BigInt(e.id));
    expect([...positions].sort((x, y) => (x < y ? -1 : 1))).toEqual(positions);
    expect(s1.got[0]!.data).toMatchObject({ type: 'NodeEnrolled', entity_type: 'node', revision: 0, position: s1.got[0]!.id });
    void before;
    void b;

    // Resume from the third event: exactly the rest, nothing twice.
    const cut = s1.got[2]!.id;
    const s2 = await openStream(`${base}/v1/events?resource_id=${a}`, { authorization: 'Bearer ta', 'last-event-id': cut });
    await waitFor(() => s2.got.length >= s1.got.length - 3, { what: 'replayed tail' });
    await s2.close();
    expect(s2.got.map((e) => e.id)).toEqual(s1.got.slice(3).map((e) => e.id));
  });

  it('lets an admin see every tenant, and refuses without a token', async () => {
    const none = await fetch(`${base}/v1/events`);
    expect(none.status).toBe(401);
    expect(none.headers.get('content-type')).toContain('application/problem+json');
    const s = await openStream(`${base}/v1/events?since_position=0`, { authorization: 'Bearer tadm' });
    await h.enroll({ driver_info: { ipmi_password: 'sse-SECRET-1', nested: { api_token: 'sse-SECRET-2' } } }, 'ta');
    await h.enroll({}, 'tb');
    await waitFor(() => s.got.length >= 2, { what: 'both tenants\' events' });
    await s.close();
    expect(new Set(s.got.map((e) => e.data.data.owner))).toEqual(new Set(['acme', 'globex']));
    const text = JSON.stringify(s.got);
    expect(text).not.toContain('sse-SECRET');
    expect(s.got[0]!.data.data.driver_info.ipmi_password).toBe('******');
  });
});
