/**
 * The bus contract on NATS JetStream, against a real `nats-server -js` started for this suite
 * (free loopback port, temporary store). Each test gets fresh streams: the fixture deletes them
 * after the test, and the next bus sets them up again from deploy/nats (idempotent setup).
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { pino } from 'pino';
import { createNatsBus } from '../../src/adapters/nats/bus.js';
import type { Bus } from '../../src/ports/bus.js';
import { deleteIroncladStreams, natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';
import { busContract } from './bus.contract.js';

if (natsServerOrSkip('bus contract (JetStream)')) {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  busContract('JetStream', async (t) => {
    const open = (): Promise<Bus> => createNatsBus({
      servers: server.url, log: pino({ level: 'silent' }),
      tuning: { workAckWaitMs: t.ackWaitMs, workMaxDeliver: t.maxDeliver, commandAckWaitMs: t.ackWaitMs, commandMaxDeliver: t.maxDeliver },
    });
    const clients: Bus[] = [await open()];
    return {
      bus: clients[0]!,
      peer: async () => {
        const c = await open();
        clients.push(c);
        return c;
      },
      async cleanup() {
        await Promise.all(clients.map((c) => c.close()));
        await deleteIroncladStreams(server.url);
      },
    };
  });
} else {
  describe.skip('Bus contract: JetStream', () => {
    it('needs nats-server', () => undefined);
  });
}
