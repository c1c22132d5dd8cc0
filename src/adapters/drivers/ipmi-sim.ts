/**
 * Simulated BMCs for tests and the demo (`ironclad demo --ipmi N`): each is a real IPMI 2.0
 * endpoint (OpenIPMI's `ipmi_sim`) on its own UDP port, whose power and boot device live in small
 * files written by a `chassis_control` script (see docs ipmi.md). Needs
 * `apt-get install -y openipmi ipmitool`. Not used by the service itself: it is a development
 * tool that lives in src/ because the demo command ships in dist/ (tests reuse it through
 * test/support/ipmi-sim.ts). It reads PATH itself (to find the executables), like the ipmi driver.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export interface SimBmc {
  readonly address: '127.0.0.1';
  readonly port: number;
  readonly username: string;
  readonly password: string;
  /** This BMC's directory: lan.conf, bmc.emu, chassis_control, the `power` and `boot` files. */
  readonly stateDir: string;
  /** driver_info for an `ipmi` node managed by this BMC. */
  readonly driverInfo: { ipmi_address: string; ipmi_port: number; ipmi_username: string; ipmi_password: string };
  /** The running ipmi_sim's process id, or null while it is stopped. */
  pid(): number | null;
  /** The machine's power as the simulator's state file holds it. */
  power(): 'power on' | 'power off';
  /**
   * Changes the machine's power behind every IPMI client's back (someone pressed the power
   * button): rewrites the state file the BMC reads.
   */
  setPower(state: 'power on' | 'power off'): void;
  /** The boot device as the simulator stores it: pxe, default (what `bootdev disk` sets), cdrom, bios, none. */
  bootDevice(): string;
  /**
   * Makes chassis_control exit non-zero, so the BMC answers requests with an error (it stays
   * reachable). `true` fails every request; a string fails only requests starting with it
   * (`'set boot'`: boot device changes are rejected while `ipmitool chassis bootdev` still exits 0).
   */
  setFaulty(faulty: boolean | string): void;
  /** Stops this BMC's ipmi_sim (like a dead BMC); its port stays reserved for restart(). */
  kill(): Promise<void>;
  /** Starts ipmi_sim again on the same port with the same state; resolves once it answers. */
  restart(): Promise<void>;
  /** `false` = kill(); `true` starts it again if it is not running. */
  setReachable(ok: boolean): Promise<void>;
  /** Stops ipmi_sim and removes the directory. */
  stop(): Promise<void>;
}

export interface StartBmcsOptions {
  /** Default 'admin'. */
  username?: string;
  /** Default: a random password per BMC. */
  password?: string;
  /** Initial power. Default 'power off'. */
  power?: 'power on' | 'power off';
  /** How long each BMC may take to answer after starting. Default 10000 ms. */
  readyTimeoutMs?: number;
}

/** True when `ipmi_sim` and `ipmitool` are executables on PATH. */
export function hasIpmiSim(): boolean {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).filter(Boolean);
  const found = (name: string): boolean => dirs.some((d) => {
    try {
      accessSync(join(d, name), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  return found('ipmi_sim') && found('ipmitool');
}

// Two ipmi_sim processes can bind the same UDP port without error, so ports are handed out
// once per process (this set) and once per machine (lock files: vitest runs files in parallel forks).
const reserved = new Set<number>();
const lockDir = join(tmpdir(), 'ironclad-ipmi-ports');
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function tryLock(port: number): boolean {
  const file = join(lockDir, String(port));
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return true;
    } catch {
      let owner = 0;
      try {
        owner = Number(readFileSync(file, 'utf8').trim());
      } catch {
        return false;
      }
      // An empty file is a lock being written right now; a dead owner's lock is taken over.
      if (!(owner > 0) || isAlive(owner)) return false;
      rmSync(file, { force: true });
    }
  }
  return false;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function bindZero(): Promise<number> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      const { port } = sock.address();
      sock.close(() => resolve(port));
    });
  });
}

async function reservePort(): Promise<number> {
  mkdirSync(lockDir, { recursive: true });
  for (let i = 0; i < 100; i++) {
    const port = await bindZero();
    if (!reserved.has(port) && tryLock(port)) {
      reserved.add(port);
      return port;
    }
  }
  throw new Error('no free UDP port found for a simulated BMC');
}

function releasePort(port: number): void {
  reserved.delete(port);
  try {
    unlinkSync(join(lockDir, String(port)));
  } catch {
    // already gone
  }
}

/** State is written through a temp file and a rename, so a reader never sees a half-written file. */
const CHASSIS_CONTROL = `#!/bin/sh
dir="$1"; shift
f=$(cat "$dir/faulty" 2>/dev/null) && case "$*" in "$f"*) exit 1;; esac
put() { printf '%s' "$2" > "$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"; }
op="$1"; shift
if [ "$op" = get ]; then
  for k in "$@"; do
    case "$k" in
      power) echo "power:$(cat "$dir/power")";;
      boot) echo "boot:$(cat "$dir/boot")";;
    esac
  done
elif [ "$op" = set ]; then
  while [ $# -ge 2 ]; do
    case "$1" in
      power) put power "$2";;
      shutdown) put power 0;;
      boot) put boot "$2";;
    esac
    shift 2
  done
fi
`;

function writeConfig(dir: string, port: number, username: string, password: string, on: boolean): void {
  const script = join(dir, 'chassis_control');
  writeFileSync(script, CHASSIS_CONTROL);
  chmodSync(script, 0o755);
  writeFileSync(join(dir, 'power'), on ? '1' : '0');
  writeFileSync(join(dir, 'boot'), 'default');
  writeFileSync(join(dir, 'bmc.emu'), [
    'mc_setbmc 0x20',
    'mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02',
    'sel_enable 0x20 1000 0x0a',
    'mc_enable 0x20',
  ].join('\n') + '\n');
  const auths = 'none md2 md5 straight';
  writeFileSync(join(dir, 'lan.conf'), [
    `name "bmc${port}"`,
    'set_working_mc 0x20',
    'startlan 1',
    `  addr 127.0.0.1 ${port}`,
    '  priv_limit admin',
    ...['callback', 'user', 'operator', 'admin'].map((l) => `  allowed_auths_${l} ${auths}`),
    `  guid ${port.toString(16).padStart(32, 'a')}`,
    'endlan',
    `chassis_control "${script} ${dir}"`,
    'user 1 false "" "unused" user 10',
    `user 2 true "${username}" "${password}" admin 10`,
  ].join('\n') + '\n');
}

/** Polls `cond` every 20 ms until it holds; rejects naming `what` after `timeoutMs`. */
async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

function answers(bmc: SimBmc): Promise<boolean> {
  const args = ['-I', 'lanplus', '-H', bmc.address, '-p', String(bmc.port), '-U', bmc.username, '-E', '-C', '3', '-R', '1', '-N', '1', 'chassis', 'power', 'status'];
  return new Promise((resolve) => {
    execFile('ipmitool', args, { env: { ...process.env, IPMI_PASSWORD: bmc.password }, timeout: 5_000 }, (err) => resolve(!err));
  });
}

/** True once some socket is bound to 127.0.0.1:<port> (so ipmitool's first try is not wasted). */
function udpBound(port: number): boolean {
  try {
    return readFileSync('/proc/net/udp', 'utf8').includes(`0100007F:${port.toString(16).toUpperCase().padStart(4, '0')} `);
  } catch {
    return true; // no procfs: let the ipmitool probe decide
  }
}

/**
 * ipmi_sim runs under a small shell that prints its pid and kills it as soon as the shell's stdin
 * (a pipe from this process) reaches end of file: when stop() closes it, and also when this
 * process dies in any way, SIGKILL included, so no simulated BMC outlives the test or demo that
 * started it. The shell exits with ipmi_sim (a BMC that dies on its own is seen at once).
 * Background jobs of a non-interactive shell read /dev/null, hence the stdin copy on fd 3.
 */
const WATCHDOG = `exec 3<&0
"$0" "$@" </dev/null 3<&- &
pid=$!
echo "$pid"
{ read _ <&3; kill "$pid" 2>/dev/null; } &
wait "$pid"`;

/** Closes the watchdog's stdin (ipmi_sim gets SIGTERM); SIGKILLs its process group after 2 s. */
function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => killGroup(child), 2_000);
    child.once('exit', () => {
      clearTimeout(force);
      live.delete(child);
      resolve();
    });
    child.stdin?.end();
  });
}

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid) process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

async function startBmc(opts: StartBmcsOptions): Promise<SimBmc> {
  const port = await reservePort();
  const stateDir = mkdtempSync(join(tmpdir(), 'ironclad-bmc-'));
  const username = opts.username ?? 'admin';
  const password = opts.password ?? `pw-${Math.random().toString(36).slice(2, 12)}`;
  writeConfig(stateDir, port, username, password, opts.power === 'power on');
  let child: ChildProcess | undefined;
  let simPid: number | null = null;

  const launch = async (): Promise<void> => {
    let stderr = '';
    let stdout = '';
    // Its own process group (detached), so a forced stop takes the shell and ipmi_sim together.
    const proc = spawn('sh', ['-c', WATCHDOG, 'ipmi_sim', '-c', 'lan.conf', '-f', 'bmc.emu', '-s', stateDir, '-n'], {
      cwd: stateDir, stdio: ['pipe', 'pipe', 'pipe'], detached: true,
    });
    proc.stdout?.on('data', (d: Buffer) => { stdout = (stdout + d.toString()).slice(0, 200); });
    proc.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2_000); });
    proc.stdin?.on('error', () => undefined); // EPIPE when the shell is already gone
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    child = proc;
    simPid = null;
    const alive = (): boolean => {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`ipmi_sim on port ${port} exited: ${stderr.trim()}`);
      return true;
    };
    const timeoutMs = opts.readyTimeoutMs ?? 10_000;
    await until(() => alive() && /^\d+\n/.test(stdout), timeoutMs, `ipmi_sim on port ${port} to start`);
    simPid = Number(stdout.split('\n')[0]);
    await until(() => alive() && udpBound(port), timeoutMs, `ipmi_sim bound to UDP ${port}`);
    await until(async () => alive() && answers(bmc), timeoutMs, `simulated BMC 127.0.0.1:${port} answering`);
  };
  const kill = async (): Promise<void> => {
    if (child) await stopProcess(child);
    child = undefined;
    simPid = null;
  };
  const read = (name: string): string => readFileSync(join(stateDir, name), 'utf8').trim();

  const bmc: SimBmc = {
    address: '127.0.0.1', port, username, password, stateDir,
    driverInfo: { ipmi_address: '127.0.0.1', ipmi_port: port, ipmi_username: username, ipmi_password: password },
    pid: () => simPid,
    power: () => (read('power') === '1' ? 'power on' : 'power off'),
    setPower(state) {
      writeFileSync(join(stateDir, 'power.button.tmp'), state === 'power on' ? '1' : '0');
      renameSync(join(stateDir, 'power.button.tmp'), join(stateDir, 'power'));
    },
    bootDevice: () => read('boot'),
    setFaulty(faulty) {
      const file = join(stateDir, 'faulty');
      if (faulty === false) rmSync(file, { force: true });
      else writeFileSync(file, faulty === true ? '' : faulty);
    },
    kill,
    async restart() {
      await kill();
      await launch();
    },
    setReachable: async (ok) => {
      if (!ok) await kill();
      else if (!child) await launch();
    },
    async stop() {
      await kill();
      rmSync(stateDir, { recursive: true, force: true });
      releasePort(port);
    },
  };
  try {
    await launch();
  } catch (err) {
    await bmc.stop();
    throw err;
  }
  return bmc;
}

/**
 * Starts `n` simulated BMCs on distinct free UDP ports and resolves once each answers
 * `chassis power status`. `stop()` stops them all (SIGTERM, then SIGKILL after 2 s) and removes
 * their files. Each ipmi_sim also stops when this process exits or dies (see WATCHDOG).
 */
export async function startBmcs(n: number, opts: StartBmcsOptions = {}): Promise<{ bmcs: SimBmc[]; stop(): Promise<void> }> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // Belt and braces: the watchdogs also stop their BMC when this process dies without this hook.
    process.once('exit', () => live.forEach(killGroup));
  }
  const started = await Promise.allSettled(Array.from({ length: n }, () => startBmc(opts)));
  const bmcs = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(bmcs.map((b) => b.stop()));
  };
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return { bmcs, stop };
}
