import { it } from 'vitest';
import { pino } from 'pino';
import { randomUUID } from 'node:crypto';
import { createNatsBus } from '../../src/adapters/nats/bus.js';
import { startNatsServer } from '../support/nats-server.js';
import { waitFor } from '../support/wait-for.js';

it('debug term', async () => {
  const srv = await startNatsServer();
  const bus = await createNatsBus({ servers: srv.url, log: pino({ level: 'debug' }), tuning: { workAckWaitMs: 1000, workMaxDeliver: 5 } });
  const seen: any[] = [];
  await bus.consumeWork(async (d) => { seen.push(d.deliveryCount); if (d.order['k'] === 'sync') d.term('r'); else { await Promise.resolve(); throw Object.assign(new Error('x'), { kind: 'validation' }); } });
  await bus.publishWork({ k: 'sync' }, { msgId: randomUUID() });
  await waitFor(async () => { const b = await bus.workBacklog(); console.log('S', seen, b); return seen.length === 1 && b.inFlight === 0; }, 5000);
  console.log('sync ok');
  await bus.publishWork({ k: 'async' }, { msgId: randomUUID() });
  await waitFor(async () => { const b = await bus.workBacklog(); console.log(seen, b); return seen.length === 2 && b.inFlight === 0; }, 5000).catch(e => console.log(String(e)));
  await bus.close(); await srv.stop();
}, 30000);
