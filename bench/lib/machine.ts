/**
 * What the numbers were measured on: cores, CPU model, Node and package versions, git commit,
 * and how busy the machine was with other work while we measured (a shared 2-core machine
 * makes that the first thing to check when a number looks wrong).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './server.js';

export interface MachineInfo {
  cores: number;
  cpu_model: string;
  memory_gb: number;
  node: string;
  platform: string;
  git_commit: string;
  git_dirty: boolean;
  versions: Record<string, string>;
}

function pkgVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'missing';
  }
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

export function machineInfo(): MachineInfo {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const versions: Record<string, string> = { ironclad: pkg.version };
  for (const n of ['fastify', 'better-sqlite3', 'xstate', 'zod', 'pino', 'undici', 'hdr-histogram-js']) versions[n] = pkgVersion(n);
  try {
    versions['sqlite'] = execFileSync(process.execPath, ['-e', "const D=require('better-sqlite3');const d=new D(':memory:');process.stdout.write(d.prepare('select sqlite_version() v').get().v)"], { cwd: REPO_ROOT, encoding: 'utf8' });
  } catch {
    versions['sqlite'] = 'unknown';
  }
  return {
    cores: cpus().length,
    cpu_model: cpus()[0]?.model ?? 'unknown',
    memory_gb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    git_commit: git(['rev-parse', 'HEAD']),
    git_dirty: git(['status', '--porcelain']) !== '',
    versions,
  };
}

/** Busy CPU time of the whole machine so far, µs (all cores; /proc/stat). */
export function machineBusyUs(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = line;
    return ((user! + nice! + system! + irq! + softirq! + (steal ?? 0)) * 1e6) / 100;
  } catch {
    return NaN;
  }
}

export const load1 = (): number => Math.round(loadavg()[0]! * 100) / 100;

/**
 * Waits (up to `maxS`) until the 1-minute load average is below `below`, so a run does not start
 * in the middle of someone else's build. Returns the load it started at.
 */
export async function waitQuiet(below: number, maxS: number, say: (s: string) => void): Promise<number> {
  const until = Date.now() + maxS * 1000;
  let told = false;
  while (load1() >= below && Date.now() < until) {
    if (!told) say(`machine busy (load ${load1()} on ${cpus().length} cores); waiting up to ${maxS} s for it to settle below ${below}`);
    told = true;
    await new Promise((r) => setTimeout(r, 5000));
  }
  return load1();
}

/**
 * Measures how many cores other processes kept busy during `fn` (machine busy time minus the
 * processes we account for), next to the load average.
 */
export class NoiseMeter {
  private t0 = 0;
  private busy0 = 0;
  start(): void {
    this.t0 = performance.now();
    this.busy0 = machineBusyUs();
  }
  /** `oursUs`: CPU µs used by our own processes over the same interval. */
  stop(oursUs: number): { other_cores: number; load1: number } {
    const wallUs = (performance.now() - this.t0) * 1000;
    const other = (machineBusyUs() - this.busy0 - oursUs) / wallUs;
    return { other_cores: Math.round(Math.max(0, other) * 100) / 100, load1: load1() };
  }
}
