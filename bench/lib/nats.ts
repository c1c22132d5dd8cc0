/**
 * A real `nats-server -js` for BENCH_MODE=nats: a free loopback port, a temporary store directory,
 * ready once a client gets JetStream account info. Stopped with SIGTERM (SIGKILL after 10 s).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { freePort, removeDir, tempDataDir } from './server.js';

export interface BenchNats {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function binary(): string {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/bin', '/usr/bin'];
  for (const d of dirs) if (d && existsSync(join(d, 'nats-server'))) return join(d, 'nats-server');
  throw new Error('nats-server not found (apt-get install -y nats-server)');
}

async function jetStreamAnswers(url: string): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, reconnect: false, timeout: 1000 });
    try {
      await (await jetstreamManager(nc, { timeout: 1000 })).getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}

export async function startNats(): Promise<BenchNats> {
  const port = await freePort();
  const dir = tempDataDir();
  const child = spawn(binary(), ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], { stdio: 'ignore' });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const url = `nats://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  while (!(await jetStreamAnswers(url))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`nats-server on ${url} did not start`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url, pid: child.pid!,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      removeDir(dir);
    },
  };
}
