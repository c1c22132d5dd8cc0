/**
 * A real `nats-server -js` for the bus suites: one per suite, on a free loopback port, with a
 * temporary store directory. Start-up is awaited on its condition (a client connects and the
 * JetStream API answers), bounded; stop sends SIGTERM to the server's PID, SIGKILL if it does not
 * exit in time, and removes the store directory. Nothing sleeps.
 *
 * When the binary is missing, `natsServerOrSkip()` prints why the suite is skipped on a laptop,
 * and throws in CI (`CI=true`) so a missing server can never turn the bus suites green by absence.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { NATS_DEFINITIONS } from '../../src/adapters/nats/definitions.js';
import { freePort } from './server-process.js';
import { waitFor } from './wait-for.js';

export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  readonly pid: number;
  /** Everything the server wrote (it logs to stderr), for failure messages. */
  output(): string;
  /** Stops the server (SIGTERM, then SIGKILL after `timeoutMs`) and removes its store. Safe to call twice. */
  stop(timeoutMs?: number): Promise<void>;
}

/** The nats-server binary: $NATS_SERVER_BIN, else the first `nats-server` on PATH or in /usr/sbin, /usr/local/bin. */
export function natsServerBinary(): string | null {
  const explicit = process.env['NATS_SERVER_BIN'];
  if (explicit) return existsSync(explicit) ? explicit : null;
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin', '/usr/bin'];
  for (const d of dirs) {
    const candidate = join(d, 'nats-server');
    if (d && existsSync(candidate)) return candidate;
  }
  return null;
}

export function hasNatsServer(): boolean {
  const bin = natsServerBinary();
  return bin !== null && spawnSync(bin, ['--version'], { encoding: 'utf8' }).status === 0;
}

/**
 * True when the suite can run. When nats-server is missing: throws under CI=true (the suite must
 * fail, not vanish), otherwise prints the reason and returns false (the caller skips).
 */
export function natsServerOrSkip(suite: string): boolean {
  if (hasNatsServer()) return true;
  const reason = `${suite}: nats-server not found (install it: apt-get install -y nats-server, or set NATS_SERVER_BIN)`;
  if (process.env['CI'] === 'true') throw new Error(`${reason}; CI=true, so this is a failure, not a skip`);
  console.warn(`${reason}; skipped`);
  return false;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
}

async function acceptsJetStream(url: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, reconnect: false, timeout: 1_000 });
    try {
      const jsm = await jetstreamManager(nc, { timeout: 1_000 });
      await jsm.getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}

function spawnOnce(bin: string, port: number, storeDir: string): { child: ChildProcess; out: string[]; exited: Promise<void> } {
  const child = spawn(bin, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir, '-n', `ironclad-test-${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (c: string) => out.push(c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => out.push(c));
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      out.push(`spawn error: ${err.message}\n`);
      resolve();
    });
  });
  return { child, out, exited };
}

/** Starts a JetStream-enabled nats-server; resolves once it answers JetStream API requests. */
export async function startNatsServer(opts: { readyTimeoutMs?: number } = {}): Promise<NatsServer> {
  const bin = natsServerBinary();
  if (!bin) throw new Error('nats-server not found');
  installExitHook();
  const storeDir = mkdtempSync(join(tmpdir(), 'ironclad-nats-'));
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const { child, out, exited } = spawnOnce(bin, port, storeDir);
    live.add(child);
    void exited.then(() => live.delete(child));
    const url = `nats://127.0.0.1:${port}`;
    const gone = (): boolean => child.exitCode !== null || child.signalCode !== null || out.some((l) => l.startsWith('spawn error'));
    try {
      await waitFor(async () => gone() || (await acceptsJetStream(url)), { timeoutMs: opts.readyTimeoutMs ?? 15_000, what: `nats-server on ${url} accepts JetStream requests` });
    } catch (err) {
      child.kill('SIGKILL');
      await exited;
      rmSync(storeDir, { recursive: true, force: true });
      throw new Error(`${(err as Error).message}\n${out.join('')}`);
    }
    if (gone()) {
      // Another process took the port between freePort() and the bind: try another one.
      if (attempt < 3 && /address already in use/i.test(out.join(''))) continue;
      rmSync(storeDir, { recursive: true, force: true });
      throw new Error(`nats-server exited during start-up\n${out.join('')}`);
    }
    let stopped: Promise<void> | null = null;
    return {
      url, port, storeDir, pid: child.pid!,
      output: () => out.join(''),
      stop(timeoutMs = 10_000) {
        stopped ??= (async () => {
          if (!gone()) {
            process.kill(child.pid!, 'SIGTERM');
            let timer: NodeJS.Timeout | undefined;
            const timedOut = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
            const r = await Promise.race([exited.then(() => 'exited' as const), timedOut]);
            clearTimeout(timer);
            if (r === 'timeout') {
              process.kill(child.pid!, 'SIGKILL');
              await exited;
            }
          }
          rmSync(storeDir, { recursive: true, force: true });
        })();
        return stopped;
      },
    };
  }
}

/** Deletes Ironclad's JetStream streams (and so their consumers): the next test starts from an empty broker. */
export async function deleteIroncladStreams(url: string): Promise<void> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    for (const s of Object.values(NATS_DEFINITIONS.streams)) await jsm.streams.delete(s.name).catch(() => false);
  } finally {
    await nc.close();
  }
}
