/**
 * JetStream setup at start, against a real nats-server: idempotent, safe when several processes
 * start at once, applies a changed definition, refuses what cannot be changed in place, and the
 * read-only mode (`ironclad tail`) never creates anything.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { BusSetupError, createNatsBus } from '../../src/adapters/nats/bus.js';
import { NATS_DEFINITIONS, resolveDefinitions } from '../../src/adapters/nats/definitions.js';
import { ensureConsumer, ensureStream } from '../../src/adapters/nats/setup.js';
import type { Bus } from '../../src/ports/bus.js';
import { natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';

const log = pino({ level: 'silent' });

if (natsServerOrSkip('JetStream setup')) {
  describe('JetStream setup at start', () => {
    let server: NatsServer;
    let nc: NatsConnection;
    let jsm: JetStreamManager;
    const buses: Bus[] = [];

    beforeAll(async () => {
      server = await startNatsServer();
      nc = await connect({ servers: server.url });
      jsm = await jetstreamManager(nc);
    });
    afterEach(async () => {
      await Promise.all(buses.splice(0).map((b) => b.close()));
      for (const s of Object.values(NATS_DEFINITIONS.streams)) await jsm.streams.delete(s.name).catch(() => false);
    });
    afterAll(async () => {
      await nc?.close();
      await server?.stop();
    });

    it('creates every stream and the work consumer from deploy/nats when three processes start at once', async () => {
      buses.push(...(await Promise.all([1, 2, 3].map(() => createNatsBus({ servers: server.url, log })))));
      for (const def of Object.values(NATS_DEFINITIONS.streams)) {
        const { config } = await jsm.streams.info(def.name);
        expect(config).toMatchObject({ ...def, num_replicas: 1 }); // a standalone server holds one replica
      }
      const workers = await jsm.consumers.info(NATS_DEFINITIONS.streams.work.name, 'workers');
      expect(workers.config).toMatchObject(NATS_DEFINITIONS.consumers.workers);
    });

    it('leaves matching definitions alone and applies a changed one on the next start', async () => {
      const defs = resolveDefinitions({ clustered: false });
      buses.push(await createNatsBus({ servers: server.url, log }));
      expect(await ensureStream(jsm, defs.streams.events)).toBe('unchanged');
      expect(await ensureConsumer(jsm, defs.streams.work.name, defs.workers)).toBe('unchanged');
      buses.push(await createNatsBus({ servers: server.url, log, tuning: { workAckWaitMs: 5_000, duplicateWindowMs: 30_000 } }));
      expect((await jsm.consumers.info(defs.streams.work.name, 'workers')).config.ack_wait).toBe(5_000 * 1e6);
      expect((await jsm.streams.info(defs.streams.events.name)).config.duplicate_window).toBe(30_000 * 1e6);
    });

    it('refuses to start against a stream whose retention differs (it cannot be changed in place)', async () => {
      await jsm.streams.add({ ...NATS_DEFINITIONS.streams.work, retention: 'limits', num_replicas: 1 });
      await expect(createNatsBus({ servers: server.url, log })).rejects.toThrow(/IRONCLAD_WORK exists with a different retention/);
    });

    it('creates nothing in read-only mode and says what is missing', async () => {
      await expect(createNatsBus({ servers: server.url, log, setup: false })).rejects.toThrow(BusSetupError);
      const names: string[] = [];
      for await (const n of jsm.streams.names()) names.push(n);
      expect(names).toEqual([]);
    });
  });
} else {
  describe.skip('JetStream setup at start', () => {
    it('needs nats-server', () => undefined);
  });
}
