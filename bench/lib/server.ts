/**
 * The server under test, started the way a user starts it: `node dist/src/cli/main.js serve`, a
 * real child process on a free loopback port, configured only through its environment. The bench
 * adds one observer: `--import dist/bench/lib/probe.js`, which reads the event-loop delay and the
 * heap inside the process and answers over the IPC channel (the service itself is unchanged).
 * CPU time and RSS are read from /proc/<pid>, from outside.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const PROBE = join(REPO_ROOT, 'dist', 'bench', 'lib', 'probe.js');
const CLK_TCK = 100; // USER_HZ on Linux; /proc/<pid>/stat times are in these ticks

export interface ProbeReading {
  eld_ms: { mean: number; p50: number; p99: number; max: number; count: number };
  heap_used_mb: number;
  rss_mb: number;
  cpu_user_us: number;
  cpu_system_us: number;
}

export interface ServerOptions {
  dataDir?: string;
  env?: Record<string, string>;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  readyTimeoutMs?: number;
  /** Another build's `dist/src/cli/main.js` (A/B runs against a copy of an earlier build). Default: this tree's. */
  cli?: string;
}

export interface Server {
  baseUrl: string;
  pid: number;
  dataDir: string;
  dbPath: string;
  child: ChildProcess;
  /** ms from spawn until /readyz answered 200. */
  readyMs: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** How the process ended, or null while it runs. */
  exitInfo(): { code: number | null; signal: NodeJS.Signals | null } | null;
  /** user+system CPU of the server process so far, µs (from /proc/<pid>/stat). */
  cpuUs(): number;
  rssMb(): number;
  probe(cmd: 'reset' | 'read'): Promise<ProbeReading | null>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  output(): string;
}

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => res(port));
    });
  });
}

export const tempDataDir = (): string => mkdtempSync(join(tmpdir(), 'ironclad-bench-'));
export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true });

/** The environment every bench server gets (callers add or override). */
export function benchEnv(port: number, dataDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k === 'HOST' || k === 'PORT' || /^(IRONCLAD_|NATS_|KURRENTDB_|NODE_OPTIONS)/.test(k)) continue;
    env[k] = v;
  }
  return {
    ...env, HOST: '127.0.0.1', PORT: String(port), IRONCLAD_DATA_DIR: dataDir, IRONCLAD_LOG_LEVEL: 'warn',
    IRONCLAD_RATE_LIMIT: '100000000', IRONCLAD_MAX_PENDING: '1000000', IRONCLAD_POWER_SYNC_S: '0', ...extra,
  };
}

export function procCpuUs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK; // utime, stime (fields 14, 15)
  } catch {
    return NaN;
  }
}

export function procRssMb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

async function status(url: string): Promise<number | null> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return null;
  }
}

export async function startServer(opts: ServerOptions = {}): Promise<Server> {
  const dataDir = opts.dataDir ?? tempDataDir();
  const port = await freePort();
  const t0 = performance.now();
  const args = [...(opts.nodeArgs ?? []), '--import', pathToFileURL(PROBE).href, opts.cli ?? CLI, 'serve'];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT, env: benchEnv(port, dataDir, opts.env), stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  const out: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (c: string) => out.push(c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => out.push(c));
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.once('exit', (code, signal) => res((exitInfo = { code, signal })));
  });
  const pending = new Map<string, (r: ProbeReading | null) => void>();
  child.on('message', (m: { probe?: string; reading?: ProbeReading }) => {
    const cb = m.probe ? pending.get(m.probe) : undefined;
    if (cb) {
      pending.delete(m.probe!);
      cb(m.reading ?? null);
    }
  });
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 600_000);
  for (;;) {
    if (exitInfo) throw new Error(`server exited during start-up: ${JSON.stringify(exitInfo)}\n${out.join('')}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`server not ready in time\n${out.join('')}`);
    }
    if ((await status(`${baseUrl}/readyz`)) === 200) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const readyMs = performance.now() - t0;
  const pid = child.pid!;
  return {
    baseUrl, pid, dataDir, dbPath: join(dataDir, 'ironclad.db'), child, readyMs, exited,
    exitInfo: () => exitInfo,
    cpuUs: () => procCpuUs(pid),
    rssMb: () => procRssMb(pid),
    probe(cmd) {
      if (exitInfo || !child.connected) return Promise.resolve(null);
      return new Promise((res) => {
        const t = setTimeout(() => {
          pending.delete(cmd);
          res(null);
        }, 5000);
        pending.set(cmd, (r) => {
          clearTimeout(t);
          res(r);
        });
        child.send({ probe: cmd });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (exitInfo) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(timer);
    },
    output: () => out.join(''),
  };
}

/** Polls /readyz until 200; returns ms waited (used after a restart on the same data dir). */
export async function waitReady(baseUrl: string, timeoutMs = 600_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if ((await status(`${baseUrl}/readyz`)) === 200) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${baseUrl} not ready after ${timeoutMs} ms`);
}
