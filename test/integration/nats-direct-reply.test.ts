/**
 * The command reply paths of the NATS bus beyond the shared contract: the owner stores the reply
 * on `ironclad.reply.<msg id>` AND sends it to the requester's inbox (`Ironclad-Reply-To`).
 * - A server that stores the reply without sending it (an earlier version, or one that died in
 *   between): the requester reads the stored reply instead of answering "not confirmed".
 * - A requester that listens on the reply subject itself (an earlier version) still gets it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { randomUUID } from 'node:crypto';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { createNatsBus, REPLY_TO_HEADER } from '../../src/adapters/nats/bus.js';
import { commandConsumerName, NATS_DEFINITIONS } from '../../src/adapters/nats/definitions.js';
import { commandPattern, commandSubject, replySubject, type Bus, type CommandReply } from '../../src/ports/bus.js';
import { natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';

const PARTITIONS = 4;
const accepted = (task: Record<string, unknown>): CommandReply => ({ status: 'accepted', task, position: null });

if (natsServerOrSkip('NATS direct command replies')) {
  let server: NatsServer;
  let bus: Bus;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    bus = await createNatsBus({ servers: server.url, log: pino({ level: 'silent' }) });
    nc = await connect({ servers: server.url });
  });
  afterAll(async () => {
    await bus?.close();
    await nc?.close();
    await server?.stop();
  });

  describe('NATS bus: command replies', () => {
    it('reads the stored reply when the server stored it but never sent it to the inbox', async () => {
      const js = jetstream(nc);
      const consumer = await js.consumers.get(NATS_DEFINITIONS.streams.commands.name, await ensureAllConsumer(nc));
      let sawReplyTo: string | undefined;
      // A server of an earlier version: stores the reply, acks, sends nothing to the inbox.
      const served = (async () => {
        const m = await consumer.next({ expires: 5_000 });
        if (!m) throw new Error('no command delivered');
        sawReplyTo = m.headers?.get(REPLY_TO_HEADER);
        await js.publish(replySubject(m.headers!.get('Nats-Msg-Id')), JSON.stringify(accepted({ id: 'stored-only' })));
        m.ack();
      })();
      const reply = await bus.request(commandSubject(randomUUID(), PARTITIONS), { a: 1 }, { msgId: randomUUID(), timeoutMs: 1_500 });
      await served;
      expect(sawReplyTo).toMatch(/^_INBOX\./);
      expect(reply).toEqual(accepted({ id: 'stored-only' }));
    });

    it('still answers a requester that listens on the reply subject (no Ironclad-Reply-To header)', async () => {
      const sub = await bus.serveCommands(commandPattern(), async () => accepted({ id: 'served' }));
      try {
        const msgId = randomUUID();
        const listening = nc.subscribe(replySubject(msgId), { max: 1 });
        const h = headers();
        h.set('Nats-Msg-Id', msgId);
        await jetstream(nc).publish(commandSubject(randomUUID(), PARTITIONS), JSON.stringify({ b: 2 }), { headers: h });
        let got: CommandReply | null = null;
        for await (const m of listening) got = m.json<CommandReply>();
        expect(got).toEqual(accepted({ id: 'served' }));
      } finally {
        await sub.close();
      }
    });
  });

  /** The durable consumer serving every command (what `serveCommands(commandPattern())` uses). */
  async function ensureAllConsumer(conn: NatsConnection): Promise<string> {
    const jsm = await jetstreamManager(conn);
    const name = commandConsumerName(commandPattern());
    await jsm.consumers.add(NATS_DEFINITIONS.streams.commands.name, { ...NATS_DEFINITIONS.consumers.commands, durable_name: name, filter_subject: commandPattern() });
    return name;
  }
} else {
  describe.skip('NATS bus: command replies', () => {
    it('needs nats-server', () => undefined);
  });
}
