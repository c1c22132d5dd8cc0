/**
 * Idempotent JetStream setup at start: each stream and consumer is created when missing, left
 * alone when it already matches its definition, and updated when an updatable field differs
 * (so a changed file in deploy/nats takes effect on the next start). Several processes may
 * start at once: losing the creation race is not an error.
 */
import { JetStreamApiCodes, JetStreamApiError, type JetStreamManager, type StreamConfig, type ConsumerConfig } from '@nats-io/jetstream';
import type { ConsumerDefinition, StreamDefinition } from './definitions.js';

/** Fields a server cannot change on an existing stream: a difference there needs an operator. */
const IMMUTABLE_STREAM_FIELDS = ['retention', 'storage'] as const;

const ALREADY_IN_USE = 10058; // stream name already in use with a different configuration
const CONSUMER_EXISTS = 10148; // consumer already exists (with a different configuration)

const isApiError = (err: unknown, code: number): boolean => err instanceof JetStreamApiError && err.code === code;

/** Keys of `wanted` whose value differs from `actual` (defaults the server filled in are ignored). */
export function differingKeys(wanted: Record<string, unknown>, actual: Record<string, unknown>): string[] {
  return Object.keys(wanted).filter((k) => JSON.stringify(wanted[k]) !== JSON.stringify(actual[k] ?? null) && !(wanted[k] === undefined));
}

export async function ensureStream(jsm: JetStreamManager, def: StreamDefinition): Promise<'created' | 'unchanged' | 'updated'> {
  let current: StreamConfig;
  try {
    current = (await jsm.streams.info(def.name)).config;
  } catch (err) {
    if (!isApiError(err, JetStreamApiCodes.StreamNotFound)) throw err;
    try {
      await jsm.streams.add(def);
      return 'created';
    } catch (addErr) {
      if (!isApiError(addErr, ALREADY_IN_USE)) throw addErr;
      current = (await jsm.streams.info(def.name)).config; // another process created it first
    }
  }
  const diff = differingKeys(def, current as unknown as Record<string, unknown>).filter((k) => k !== 'description');
  if (diff.length === 0) return 'unchanged';
  const immutable = diff.filter((k) => (IMMUTABLE_STREAM_FIELDS as readonly string[]).includes(k));
  if (immutable.length > 0) {
    throw new Error(`JetStream stream ${def.name} exists with a different ${immutable.join(', ')} than deploy/nats defines; it cannot be changed in place (recreate the stream)`);
  }
  const { name: _name, ...update } = def;
  await jsm.streams.update(def.name, update); // the client merges it into the current configuration
  return 'updated';
}

export async function ensureConsumer(jsm: JetStreamManager, stream: string, def: ConsumerDefinition): Promise<'created' | 'unchanged' | 'updated'> {
  let current: ConsumerConfig;
  try {
    current = (await jsm.consumers.info(stream, def.durable_name)).config;
  } catch (err) {
    if (!isApiError(err, JetStreamApiCodes.ConsumerNotFound)) throw err;
    try {
      await jsm.consumers.add(stream, def);
      return 'created';
    } catch (addErr) {
      if (!isApiError(addErr, CONSUMER_EXISTS)) throw addErr;
      current = (await jsm.consumers.info(stream, def.durable_name)).config;
    }
  }
  const diff = differingKeys(def, current as unknown as Record<string, unknown>).filter((k) => k !== 'description');
  if (diff.length === 0) return 'unchanged';
  const { durable_name: _durable, deliver_policy: _d, ack_policy: _a, replay_policy: _r, ...update } = def;
  await jsm.consumers.update(stream, def.durable_name, update); // merged into the current configuration by the client
  return 'updated';
}
