/**
 * `ironclad tail [--resource <id>] [--since <sequence>] [--json]`: follows the notifications on
 * NATS (IRONCLAD_EVENTS) and prints one line per event until SIGINT/SIGTERM:
 *   <sequence> <subject> <type> rev=<revision> [from=… to=… target_provision_state=… power_state=… …]
 * Without --since it starts with the next notification; `--since 1` replays everything retained.
 * It only reads: streams are not created or changed.
 */
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import type { Config } from '../config.js';
import { BusSetupError, createNatsBus } from '../adapters/nats/bus.js';
import { eventFilter, type Notification } from '../ports/bus.js';

export interface TailOptions {
  resource?: string;
  since?: number;
  json?: boolean;
}

/** Data fields that say where an entity is (printed when the event carries them). */
const STATE_FIELDS = ['from', 'to', 'provision_state', 'target_provision_state', 'power_state', 'target_power_state', 'state', 'task_id'] as const;

export function formatNotification(n: Notification): string {
  const e = n.envelope;
  const fields = STATE_FIELDS.filter((k) => e.data[k] !== undefined && e.data[k] !== null).map((k) => `${k}=${JSON.stringify(e.data[k])}`);
  return [String(n.sequence), n.subject, e.type, `rev=${e.revision}`, ...fields].join(' ');
}

/** Resolves with the exit code once `stop` fires (or at once when it cannot connect). */
export async function tailCommand(config: Config, opts: TailOptions, out: (s: string) => void, stop: Promise<unknown>): Promise<number> {
  if (!config.NATS_URL) {
    process.stderr.write('ironclad tail: NATS_URL is not set (notifications are published to NATS only when Ironclad runs with NATS_URL)\n');
    return 2;
  }
  const log = pino({ level: config.IRONCLAD_LOG_LEVEL === 'info' ? 'warn' : config.IRONCLAD_LOG_LEVEL }, pino.destination(2));
  let bus;
  try {
    bus = await createNatsBus({ servers: config.NATS_URL, log, setup: false, name: 'ironclad tail' });
  } catch (err) {
    process.stderr.write(`ironclad tail: ${err instanceof BusSetupError ? err.message : `NATS at ${config.NATS_URL}: ${(err as Error).message}`}\n`);
    return 1;
  }
  try {
    const filter = opts.resource ? eventFilter({ entity_id: opts.resource }) : eventFilter();
    await bus.subscribeEvents(
      { fromSequence: opts.since, filter },
      (n) => out(`${opts.json ? JSON.stringify({ sequence: n.sequence, subject: n.subject, msg_id: n.msgId, event: n.envelope }) : formatNotification(n)}\n`),
    );
    process.stderr.write(`ironclad tail: following ${filter} from ${opts.since === undefined ? 'the next notification' : `sequence ${opts.since}`} (Ctrl-C to stop)\n`);
    await stop;
    return 0;
  } finally {
    await bus.close();
  }
}

export const TAIL_USAGE = `  ironclad tail [--resource <id>] [--since <sequence>] [--json]
                                                  follow the NATS notifications (needs NATS_URL)`;

/** `ironclad tail ...` from the command line: parses the arguments, runs until SIGINT/SIGTERM. */
export async function runTail(args: string[], config: Config): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { resource: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' } } }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\nusage:\n${TAIL_USAGE}\n`);
    return 2;
  }
  const since = values.since === undefined ? undefined : Number(values.since);
  if (since !== undefined && (!Number.isInteger(since) || since < 1)) {
    process.stderr.write('--since must be a stream sequence (a positive integer)\n');
    return 2;
  }
  const stop = new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  return tailCommand(config, { resource: values.resource, since, json: values.json ?? false }, (s) => process.stdout.write(s), stop);
}
