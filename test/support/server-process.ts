/**
 * The real service as a child process, for the e2e suites: `node dist/src/cli/main.js serve` on a
 * free loopback port, configured only through its environment (as in production). dist/ is built
 * by the vitest globalSetup. Output is captured line by line; `kill()` sends a signal and waits for
 * the exit. Nothing here sleeps: start-up and exits are awaited on their conditions, with bounds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait-for.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

export interface HttpResponse<T = any> {
  status: number;
  headers: Headers;
  /** The parsed JSON body, or null when the body is empty or not JSON. */
  json: T;
  text: string;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ServerProcess {
  readonly baseUrl: string;
  readonly port: number;
  readonly dataDir: string;
  readonly child: ChildProcess;
  /** Every chunk the process wrote, in order (kept after it exits). */
  readonly stdout: string[];
  readonly stderr: string[];
  /** Every response body this helper received from the server, for "never echoed" checks. */
  readonly bodies: string[];
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  /** Null while running. */
  exit(): Exit | null;
  http<T = any>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<HttpResponse<T>>;
  /** Sends `signal` (SIGKILL for crash tests, SIGTERM for a graceful stop) and awaits the exit. */
  kill(signal?: NodeJS.Signals, timeoutMs?: number): Promise<Exit>;
  /** stdout and stderr joined, for assertions and failure messages. */
  output(): string;
}

export interface StartOptions {
  dataDir: string;
  /** Extra environment (wins over the defaults below). */
  env?: Record<string, string>;
  /** Bound on the wait for /healthz and /readyz. Default 30 s. */
  readyTimeoutMs?: number;
}

/** Variables of the parent that would change what the child runs against; never inherited. */
const CONFIG_PREFIXES = ['IRONCLAD_', 'NATS_', 'KURRENTDB_'];
const CONFIG_NAMES = new Set(['HOST', 'PORT']);

/** The parent's environment without any Ironclad configuration, plus `extra`. */
export function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (CONFIG_NAMES.has(k) || CONFIG_PREFIXES.some((p) => k.startsWith(p))) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, release it). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolvePort(port) : reject(new Error('could not find a free port'))));
    });
  });
}

const live = new Set<ServerProcess>();
let exitHookInstalled = false;

/** Last resort if the test worker itself goes away: never leave a server behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const s of live) if (s.exit() === null) s.child.kill('SIGKILL');
  });
}

function spawnServer(port: number, opts: StartOptions): ServerProcess {
  const baseUrl = `http://127.0.0.1:${port}`;
  const env = childEnv({
    HOST: '127.0.0.1', PORT: String(port), IRONCLAD_DATA_DIR: opts.dataDir, IRONCLAD_LOG_LEVEL: 'info',
    IRONCLAD_POWER_SYNC_S: '0', IRONCLAD_RATE_LIMIT: '1000000', IRONCLAD_SHED_EVENT_LOOP_DELAY_MS: '0', ...opts.env,
  });
  const child = spawn(process.execPath, [CLI, 'serve'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const bodies: string[] = [];
  child.stdout!.setEncoding('utf8').on('data', (c: string) => stdout.push(c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => stderr.push(c));
  let exitInfo: Exit | null = null;
  const exited = new Promise<Exit>((res) => {
    child.once('exit', (code, signal) => {
      exitInfo = { code, signal };
      res(exitInfo);
    });
    child.once('error', (err) => {
      stderr.push(`spawn error: ${err.message}\n`);
      exitInfo = { code: -1, signal: null };
      res(exitInfo);
    });
  });

  const proc: ServerProcess = {
    baseUrl, port, dataDir: opts.dataDir, child, stdout, stderr, bodies, exited,
    exit: () => exitInfo,
    async http(method, path, body, headers = {}) {
      const res = await fetch(baseUrl + path, {
        method,
        headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: AbortSignal.timeout(90_000),
      });
      const text = await res.text();
      bodies.push(text);
      let json: any = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      return { status: res.status, headers: res.headers, json, text };
    },
    async kill(signal = 'SIGKILL', timeoutMs = 30_000) {
      if (exitInfo) return exitInfo;
      child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((res) => (timer = setTimeout(() => res('timeout'), timeoutMs)));
      const r = await Promise.race([exited, timedOut]);
      clearTimeout(timer);
      if (r === 'timeout') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`server did not exit within ${timeoutMs} ms of ${signal} (killed with SIGKILL)\n${proc.output()}`);
      }
      return r;
    },
    output: () => `--- stdout ---\n${stdout.join('')}\n--- stderr ---\n${stderr.join('')}`,
  };
  return proc;
}

async function probe(url: string): Promise<number | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return null;
  }
}

/**
 * Starts the server on a free port and resolves once `GET /healthz` answers and `/readyz` is 200.
 * If the port was taken in between (EADDRINUSE), tries another one. Fails with the process's
 * output if it exits or is not ready in time.
 */
export async function startServer(opts: StartOptions): Promise<ServerProcess> {
  installExitHook();
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;
  for (let attempt = 1; ; attempt++) {
    const proc = spawnServer(await freePort(), opts);
    live.add(proc);
    void proc.exited.then(() => live.delete(proc));
    try {
      await waitFor(async () => proc.exit() !== null || (await probe(`${proc.baseUrl}/healthz`)) === 200, { timeoutMs, what: 'GET /healthz answers' });
      await waitFor(async () => proc.exit() !== null || (await probe(`${proc.baseUrl}/readyz`)) === 200, { timeoutMs, what: 'GET /readyz is 200' });
    } catch (err) {
      await proc.kill('SIGKILL').catch(() => undefined);
      throw new Error(`${(err as Error).message}\n${proc.output()}`);
    }
    const exit = proc.exit();
    if (exit === null) return proc;
    if (attempt < 3 && /EADDRINUSE/.test(proc.output())) continue;
    throw new Error(`server exited during start-up (code ${exit.code}, signal ${exit.signal})\n${proc.output()}`);
  }
}

/** SIGKILLs every server this worker started that is still running, and waits for them. */
export async function stopAllServers(): Promise<void> {
  await Promise.all([...live].map((s) => s.kill('SIGKILL').catch(() => undefined)));
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/cli/main.js <args>` to completion with a bounded time. */
export function runCli(args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((res, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: REPO_ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ironclad ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // 'close' (not 'exit'): both pipes are drained, so the output is complete.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

/** A fresh temporary directory; `remove()` deletes it (safe to call twice). */
export function tempDir(prefix = 'ironclad-e2e-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}
