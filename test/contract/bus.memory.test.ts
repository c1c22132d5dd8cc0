import { createMemoryBroker } from '../../src/adapters/memory/bus.js';
import type { Bus } from '../../src/ports/bus.js';
import { busContract } from './bus.contract.js';

busContract('in-process', async (t) => {
  const broker = createMemoryBroker({
    workAckWaitMs: t.ackWaitMs, workMaxDeliver: t.maxDeliver, commandAckWaitMs: t.ackWaitMs, commandMaxDeliver: t.maxDeliver,
    retryDelayMs: () => 20, logError: () => undefined,
  });
  const clients: Bus[] = [broker.connect()];
  return {
    bus: clients[0]!,
    peer: async () => {
      const c = broker.connect();
      clients.push(c);
      return c;
    },
    async cleanup() {
      await Promise.all(clients.map((c) => c.close()));
      broker.stop();
    },
  };
});
