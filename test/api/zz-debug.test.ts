import { it } from 'vitest';
import { createHarness } from '../support/harness.js';
it('debug', async () => {
  const h = await createHarness();
  const id = await h.enroll({ name: 'x' });
  await h.provision(id, 'manage');
  await h.driveUntil(id, 'manageable');
  await h.provision(id, 'provide');
  await h.driveUntil(id, 'available');
  let r = await h.req({ method: 'DELETE', url: `/v1/nodes/${id}` });
  console.log(r.statusCode, r.body);
  r = await h.req({ method: 'GET', url: `/v1/nodes/${id}` });
  console.log(r.statusCode, r.body);
  const ev = await h.store.readStream('node-' + id, {});
  console.log(ev.map((e: any) => e.type));
  const rt = h.ic.internals['runtime'] as any;
  console.log((await rt.load(id)).state.deleted);
  await h.close();
});
