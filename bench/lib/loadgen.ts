/**
 * The load generator runs in its own process (child_process.fork of loadgen-worker.js), so its
 * work never shares an event loop with the server or with the bench's bookkeeping. This module is
 * the parent's side: the run descriptions, and `runLoad` (fork, send one run, await the result).
 * The generator is transport-agnostic HTTP: a NATS mode of the server (not built yet) is measured
 * through the same REST API, so these runs apply to it unchanged.
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './server.js';
import type { LatencySummary } from './hdr.js';

export interface Phase {
  label: string;
  /** Requests per second, scheduled at fixed intervals (open loop). */
  rate: number;
  durationS: number;
}

/** Open loop, constant arrival rate: power on/off alternation per node, on_busy "queue". */
export interface OpenRun {
  mode: 'open';
  baseUrl: string;
  nodes: string[];
  phases: Phase[];
  dist: 'uniform' | 'zipf';
  zipfS?: number;
  connections: number;
  /** x-request-id prefix: the server records it as each event's request_id (accepted = appended check). */
  tag: string;
  /** More processes of the same fleet (the cluster): requests go round-robin over baseUrl and these. */
  extraBaseUrls?: string[];
  /** Follow each 202 with GET /v1/nodes/{id} + Ironclad-Position: the projection lag. */
  lag?: boolean;
  seed?: number;
  /** Stop a phase early once more than this many seconds of requests are unanswered (search trials). */
  abortBacklogS?: number;
}

/** Closed loop: `concurrency` clients each run enroll → verbs..., long-polling every task. */
export interface LifecycleRun {
  mode: 'lifecycle';
  baseUrl: string;
  concurrency: number;
  durationS: number;
  verbs: string[];
  driverInfo: Record<string, unknown>;
  tag: string;
}

export interface SecondSample {
  s: number;
  sent: number;
  accepted: number;
  p99: number;
}

export interface PhaseResult {
  label: string;
  rate: number;
  durationS: number;
  scheduled: number;
  status: Record<string, number>;
  accepted: number;
  coalesced: number;
  achieved_per_s: number;
  /** Latency of 202 answers from their scheduled send time (ms). */
  latency: LatencySummary;
  hist: string;
  timeline: SecondSample[];
}

export interface GenStats {
  wall_ms: number;
  cpu_us: number;
  eld_p99_ms: number;
  eld_max_ms: number;
  /** Requests that were late leaving the generator by more than 5 ms (generator saturated). */
  late_sends: number;
}

export interface OpenResult {
  mode: 'open';
  phases: PhaseResult[];
  lag?: LatencySummary;
  lagErrors?: Record<string, number>;
  gen: GenStats;
}

export interface LifecycleResult {
  mode: 'lifecycle';
  completed: number;
  failed: number;
  per_s: number;
  latency: LatencySummary;
  verbLatency: Record<string, LatencySummary>;
  readModelChecked: number;
  readModelMismatch: number;
  /** 503 `overloaded` answers retried (load shedding). */
  shedRetries?: number;
  errors: string[];
  gen: GenStats;
}

export type RunSpec = OpenRun | LifecycleRun;
export type RunResult = OpenResult | LifecycleResult;

const WORKER = join(REPO_ROOT, 'dist', 'bench', 'lib', 'loadgen-worker.js');

/** Forks a generator process, runs `spec` in it and resolves with its result. */
export function runLoad<T extends RunResult>(spec: RunSpec): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let done = false;
    child.once('message', (m: { ok: boolean; result?: T; error?: string }) => {
      done = true;
      child.kill();
      if (m.ok) resolve(m.result!);
      else reject(new Error(`load generator: ${m.error}`));
    });
    child.once('exit', (code) => {
      if (!done) reject(new Error(`load generator exited with ${code} before answering`));
    });
    child.send(spec);
  });
}
