import { it } from 'vitest';
import { createHarness } from '../support/harness.js';
it('probe', async () => {
  const h = await createHarness({ IRONCLAD_TOKENS: 'tA=acme:member' });
  for (const o of [{ method: 'GET', url: '/nope' }, { method: 'PUT', url: '/v1/nodes' }]) {
    const r = await h.req(o as any);
    console.log(o, r.statusCode, r.body.slice(0, 200));
  }
  await h.close();
});
