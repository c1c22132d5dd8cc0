/**
 * The JetStream streams and consumers Ironclad uses. The single source is deploy/nats/*.json
 * (the same files an operator applies with `nats stream add --config <file>`); this module imports
 * them and applies the few run-time adjustments: the replica count is clamped to 1 on a standalone
 * server, and tests may shorten timings. Durations are nanoseconds, as in the files.
 */
import type { ConsumerConfig, StreamConfig } from '@nats-io/jetstream';
import cmdStream from '../../../deploy/nats/stream-IRONCLAD_CMD.json' with { type: 'json' };
import repliesStream from '../../../deploy/nats/stream-IRONCLAD_REPLIES.json' with { type: 'json' };
import workStream from '../../../deploy/nats/stream-IRONCLAD_WORK.json' with { type: 'json' };
import eventsStream from '../../../deploy/nats/stream-IRONCLAD_EVENTS.json' with { type: 'json' };
import workersConsumer from '../../../deploy/nats/consumer-IRONCLAD_WORK-workers.json' with { type: 'json' };
import commandConsumer from '../../../deploy/nats/consumer-IRONCLAD_CMD-partition.json' with { type: 'json' };
import { SUBJECT_ROOT } from '../../ports/bus.js';

export type StreamDefinition = Partial<StreamConfig> & { name: string; subjects: string[] };
export type ConsumerDefinition = Partial<ConsumerConfig> & { durable_name: string };

/** The files as shipped (deploy/nats). */
export const NATS_DEFINITIONS = {
  streams: {
    commands: cmdStream as StreamDefinition,
    replies: repliesStream as StreamDefinition,
    work: workStream as StreamDefinition,
    events: eventsStream as StreamDefinition,
  },
  consumers: {
    workers: workersConsumer as ConsumerDefinition,
    commands: commandConsumer as ConsumerDefinition,
  },
} as const;

/** Run-time adjustments (tests shorten timings; production uses the files unchanged). */
export interface NatsTuning {
  /** Replicas of every stream; default: the file's value on a cluster, 1 on a standalone server. */
  replicas?: number;
  duplicateWindowMs?: number;
  workAckWaitMs?: number;
  workMaxDeliver?: number;
  commandAckWaitMs?: number;
  commandMaxDeliver?: number;
}

export interface ResolvedDefinitions {
  streams: { commands: StreamDefinition; replies: StreamDefinition; work: StreamDefinition; events: StreamDefinition };
  workers: ConsumerDefinition;
  /** The consumer definition serving `pattern` (one durable consumer per pattern). */
  commandConsumer(pattern: string): ConsumerDefinition;
}

const ns = (ms: number): number => ms * 1_000_000;

/** Consumer name for a served pattern: `cmd_all` for every command, `cmd_<p>` for one partition. */
export function commandConsumerName(pattern: string): string {
  if (pattern === `${SUBJECT_ROOT.commands}.>`) return 'cmd_all';
  const m = new RegExp(`^${SUBJECT_ROOT.commands.replace('.', '\\.')}\\.(\\d+)\\.\\*$`).exec(pattern);
  if (m) return `cmd_${m[1]}`;
  return `cmd_${pattern.replace(/^ironclad\.cmd\./, '').replace(/\*/g, 'any').replace(/>/g, 'all').replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

export function resolveDefinitions(opts: { clustered: boolean; tuning?: NatsTuning }): ResolvedDefinitions {
  const t = opts.tuning ?? {};
  const stream = (d: StreamDefinition): StreamDefinition => {
    const out: StreamDefinition = { ...d, num_replicas: t.replicas ?? (opts.clustered ? d.num_replicas ?? 1 : 1) };
    if (t.duplicateWindowMs !== undefined) out.duplicate_window = ns(t.duplicateWindowMs);
    return out;
  };
  const s = NATS_DEFINITIONS.streams;
  const workers: ConsumerDefinition = { ...NATS_DEFINITIONS.consumers.workers };
  if (t.workAckWaitMs !== undefined) workers.ack_wait = ns(t.workAckWaitMs);
  if (t.workMaxDeliver !== undefined) workers.max_deliver = t.workMaxDeliver;
  return {
    streams: { commands: stream(s.commands), replies: stream(s.replies), work: stream(s.work), events: stream(s.events) },
    workers,
    commandConsumer(pattern) {
      const c: ConsumerDefinition = { ...NATS_DEFINITIONS.consumers.commands, durable_name: commandConsumerName(pattern), filter_subject: pattern };
      if (t.commandAckWaitMs !== undefined) c.ack_wait = ns(t.commandAckWaitMs);
      if (t.commandMaxDeliver !== undefined) c.max_deliver = t.commandMaxDeliver;
      return c;
    },
  };
}
