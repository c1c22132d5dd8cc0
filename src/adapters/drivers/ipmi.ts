/**
 * The ipmi driver (ipmi.md): power and boot device through `ipmitool -I lanplus`, like Ironic's
 * ipmitool driver. Provision steps are delegated to `options.steps` (the fake driver's behaviour),
 * since there is no deploy agent here; a deploy first sets the boot device to PXE.
 *
 * The password reaches ipmitool only through the child's `IPMI_PASSWORD` variable (`-E`): never
 * on the command line (where `ps` shows it), and never in a log line or an error message.
 */
import { execFile } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import {
  DriverError, type Driver, type DriverNode, type PowerState, type PowerTarget, type StepOutcome,
} from '../../ports/driver.js';

export const BootDevices = ['pxe', 'disk', 'cdrom', 'bios'] as const;
export type BootDevice = (typeof BootDevices)[number];

export interface IpmiDriverOptions {
  /** Runs provision steps (deploy, clean...): the fake driver in this project. */
  steps: Driver;
  /** ipmitool executable. Default `ipmitool` (looked up on PATH). */
  ipmitool?: string;
  /** Kill one ipmitool call after this long. Default 15000 ms. */
  timeoutMs?: number;
  /** Extra attempts after a transient failure (permanent ones fail at once). Default 2. */
  retries?: number;
  /** Pause before each retry. Default 1000 ms. */
  retryDelayMs?: number;
  /** Pause between power status polls while an action takes effect. Default 1000 ms. */
  pollIntervalMs?: number;
  /** How long a hard power action (on, off, cycle) may take to show in the status. Default 60 s. */
  powerWaitMs?: number;
  /** How long the OS may take to shut down after a soft power off. Default 300 s. */
  softPowerOffWaitMs?: number;
  /** Receives diagnostics; fields never hold the password. */
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The ipmi driver: a Driver plus the boot device control a deploy needs. */
export interface IpmiDriver extends Driver {
  /**
   * Sets the next boot device, then reads it back (`chassis bootdev` exits 0 even when the BMC
   * rejects it). Throws DriverError: permanent when the value did not stick.
   */
  setBootDevice(node: DriverNode, device: BootDevice, signal?: AbortSignal): Promise<void>;
}

interface Bmc { address: string; port: number; username: string; password: string }

/**
 * What ipmitool 1.8.19 printed against ipmi_sim (checked on these machines, with `-v`):
 * - wrong password:  "> RAKP 2 HMAC is invalid" then "Error: Unable to establish IPMI v2 / RMCP+
 *   session", exit 1, in ~0.04 s;
 * - unknown user:    "RAKP 2 message indicates an error : unauthorized name" then the same line;
 * - BMC down / wrong port: "Get Auth Capabilities error", "Error issuing Get Channel
 *   Authentication Capabilities request", then the same line, exit 1, after ~2 s (-R 1 -N 1);
 * - BMC reached but failing: "Get Chassis Power Status failed: Unspecified error", exit 1.
 * Without `-v` all three session failures print only "Unable to establish...", so `-v` is always
 * passed (it adds lines to stderr only; stdout and timing are unchanged). A plain "authentication"
 * or "RAKP" match would be wrong: the dead-BMC text says "Authentication Capabilities", and
 * "RAKP 2 ... insufficient resources for session" (63 sessions in use) is worth retrying.
 */
const AUTH_FAILURE = /HMAC is invalid|unauthorized name|invalid name length|invalid user name|password/i;
const NO_SESSION = /Unable to establish|Get Auth Capabilities error|No response/i;
/** `-v` chatter that is printed on every call. */
const NOISE = /Loading IANA|Get VSO Capabilities|Invalid completion code received: Invalid command|Discovered IPMB/;

const isString = (v: unknown): v is string => typeof v === 'string' && v.length > 0;

/** Validates driver_info; a permanent DriverError names every missing or bad key. */
function bmcOf(node: DriverNode): Bmc {
  const info = node.driver_info;
  const missing = ['ipmi_address', 'ipmi_username', 'ipmi_password'].filter((k) => !isString(info[k]));
  const rawPort = info['ipmi_port'] ?? 623;
  const port = typeof rawPort === 'string' && /^\d+$/.test(rawPort) ? Number(rawPort) : rawPort;
  const badPort = !(typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536);
  if (missing.length > 0 || badPort) {
    const parts = [
      ...(missing.length > 0 ? [`missing ${missing.join(', ')}`] : []),
      ...(badPort ? ['ipmi_port must be an integer from 1 to 65535'] : []),
    ];
    throw new DriverError('permanent', `node ${node.id}: invalid ipmi driver_info: ${parts.join('; ')}`);
  }
  return {
    address: info['ipmi_address'] as string,
    port: port as number,
    username: info['ipmi_username'] as string,
    password: info['ipmi_password'] as string,
  };
}

/** Meaningful stderr lines, password masked, kept short for an error message. */
function summarize(stderr: string, password: string): string {
  const lines = stderr.split('\n').map((l) => l.replace(/^>\s*/, '').trim()).filter((l) => l && !NOISE.test(l));
  const text = lines.join('; ').split(password).join('***');
  return text.length > 300 ? `${text.slice(0, 300)}...` : text || 'no error output';
}

interface ExecFailure extends Error { code?: number | string; killed?: boolean; signal?: string | null }

/** Creates the ipmi driver. See IpmiDriverOptions for defaults. */
export function createIpmiDriver(options: IpmiDriverOptions): IpmiDriver {
  const bin = options.ipmitool ?? 'ipmitool';
  const timeoutMs = options.timeoutMs ?? 15_000;
  const retries = options.retries ?? 2;
  const retryDelayMs = options.retryDelayMs ?? 1_000;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const powerWaitMs = options.powerWaitMs ?? 60_000;
  const softWaitMs = options.softPowerOffWaitMs ?? 300_000;
  const log = options.log ?? ((): void => {});
  const where = (b: Bmc): string => `${b.address}:${b.port}`;
  const pause = (ms: number, signal?: AbortSignal): Promise<void> =>
    delay(ms, undefined, { signal }).catch((cause: unknown) => {
      throw new DriverError('transient', 'IPMI operation aborted', { cause });
    });

  /** Maps a failed ipmitool run to a DriverError (see AUTH_FAILURE for the evidence). */
  function classify(b: Bmc, command: string, err: ExecFailure, stderr: string, signal?: AbortSignal): DriverError {
    const detail = summarize(stderr, b.password);
    if (signal?.aborted || err.name === 'AbortError') {
      return new DriverError('transient', `IPMI ${command} on ${where(b)} aborted`);
    }
    if (err.code === 'ENOENT') return new DriverError('permanent', `ipmitool not found (${bin}): apt-get install -y ipmitool`);
    if (err.killed) return new DriverError('transient', `BMC ${where(b)} unreachable: ipmitool timed out after ${timeoutMs} ms`);
    if (AUTH_FAILURE.test(stderr)) {
      return new DriverError('permanent', `IPMI authentication failed for ${b.username}@${where(b)} (check ipmi_username / ipmi_password)`);
    }
    if (NO_SESSION.test(stderr)) return new DriverError('transient', `BMC ${where(b)} unreachable: ${detail}`);
    return new DriverError('transient', `BMC ${where(b)} failed ${command}: ${detail}`);
  }

  function runOnce(b: Bmc, args: string[], signal?: AbortSignal): Promise<{ stdout: string; stderr: string }> {
    const argv = ['-I', 'lanplus', '-H', b.address, '-p', String(b.port), '-U', b.username, '-E', '-C', '3', '-R', '1', '-N', '1', '-v', ...args];
    // A minimal environment: PATH to find ipmitool, C locale, and the password (only here).
    const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LC_ALL: 'C', IPMI_PASSWORD: b.password };
    return new Promise((resolve, reject) => {
      execFile(bin, argv, { env, timeout: timeoutMs, killSignal: 'SIGKILL', signal, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
        if (err) reject(classify(b, args.join(' '), err as ExecFailure, String(stderr), signal));
        else resolve({ stdout: String(stdout), stderr: String(stderr) });
      });
    });
  }

  /** One ipmitool command with bounded retries; only transient failures are retried. */
  async function ipmitool(b: Bmc, args: string[], signal?: AbortSignal): Promise<{ stdout: string; stderr: string }> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await runOnce(b, args, signal);
      } catch (err) {
        const e = err as DriverError;
        if (e.kind === 'permanent' || attempt > retries || signal?.aborted) throw e;
        log('ipmitool failed, retrying', { bmc: where(b), user: b.username, command: args.join(' '), attempt, error: e.message });
        await pause(retryDelayMs, signal);
      }
    }
  }

  async function readPower(b: Bmc, signal?: AbortSignal): Promise<PowerState> {
    const { stdout } = await ipmitool(b, ['chassis', 'power', 'status'], signal);
    const m = /Chassis Power is (on|off)/.exec(stdout);
    if (!m) throw new DriverError('transient', `BMC ${where(b)} gave an unexpected power status: ${stdout.trim().slice(0, 100)}`);
    return m[1] === 'on' ? 'power on' : 'power off';
  }

  /** Polls the status (bounded by `waitMs`) until it reads `want`; throws permanent otherwise. */
  async function awaitPower(b: Bmc, want: PowerState, waitMs: number, action: string, signal?: AbortSignal): Promise<PowerState> {
    const polls = Math.max(1, Math.ceil(waitMs / pollIntervalMs));
    let state: PowerState = await readPower(b, signal);
    for (let i = 1; state !== want && i < polls; i++) {
      await pause(pollIntervalMs, signal);
      state = await readPower(b, signal);
    }
    if (state !== want) {
      throw new DriverError('permanent', `${action} on BMC ${where(b)} did not take effect: still '${state}' after ${waitMs} ms`);
    }
    return state;
  }

  async function power(b: Bmc, verb: 'on' | 'off' | 'cycle' | 'soft', signal?: AbortSignal): Promise<void> {
    await ipmitool(b, ['chassis', 'power', verb], signal);
  }

  async function setPower(node: DriverNode, target: PowerTarget, signal?: AbortSignal): Promise<PowerState> {
    const b = bmcOf(node);
    let result: PowerState;
    switch (target) {
      case 'power on':
      case 'power off': {
        await power(b, target === 'power on' ? 'on' : 'off', signal);
        result = await awaitPower(b, target, powerWaitMs, target, signal);
        break;
      }
      case 'rebooting': {
        // A cycle on a machine that is off does nothing on many BMCs: power it on instead.
        const on = (await readPower(b, signal)) === 'power on';
        await power(b, on ? 'cycle' : 'on', signal);
        result = await awaitPower(b, 'power on', powerWaitMs, on ? 'power cycle' : 'power on', signal);
        break;
      }
      case 'soft rebooting':
      case 'soft power off': {
        if ((await readPower(b, signal)) === 'power on') {
          await power(b, 'soft', signal);
          await awaitPower(b, 'power off', softWaitMs, 'soft power off', signal);
        }
        if (target === 'soft power off') {
          result = 'power off';
          break;
        }
        await power(b, 'on', signal);
        result = await awaitPower(b, 'power on', powerWaitMs, 'power on', signal);
        break;
      }
      default: {
        const unknown: never = target;
        throw new DriverError('permanent', `unknown power target ${String(unknown)}`);
      }
    }
    log('ipmi power action done', { node: node.id, bmc: where(b), target, power_state: result });
    return result;
  }

  async function setBootDevice(node: DriverNode, device: BootDevice, signal?: AbortSignal): Promise<void> {
    const b = bmcOf(node);
    const { stderr } = await ipmitool(b, ['chassis', 'bootdev', device], signal);
    const actual = await readBootDevice(b, signal);
    if (actual !== device) {
      throw new DriverError('permanent', `BMC ${where(b)} did not accept boot device ${device} (reads back ${actual}): ${summarize(stderr, b.password)}`);
    }
    log('ipmi boot device set', { node: node.id, bmc: where(b), device });
  }

  /** Boot flags parameter 5, data byte 2, bits 5:2 (IPMI 2.0 table 28-14). */
  async function readBootDevice(b: Bmc, signal?: AbortSignal): Promise<string> {
    const { stdout } = await ipmitool(b, ['chassis', 'bootparam', 'get', '5'], signal);
    const m = /Boot parameter data:\s*([0-9a-f]{4})/i.exec(stdout);
    if (!m) throw new DriverError('transient', `BMC ${where(b)} gave unreadable boot flags: ${stdout.trim().slice(0, 100)}`);
    const selector = (parseInt(m[1].slice(2, 4), 16) >> 2) & 0x0f;
    const names: Record<number, string> = { 0: 'none', 1: 'pxe', 2: 'disk', 3: 'safe', 4: 'diag', 5: 'cdrom', 6: 'bios', 15: 'floppy' };
    return names[selector] ?? `selector ${selector}`;
  }

  return {
    name: 'ipmi',
    setBootDevice,
    setPower,
    getPower: async (node, signal) => readPower(bmcOf(node), signal),
    /**
     * Deploy (phase 'start') sets the boot device to PXE first: a permanent failure there ends
     * the step with `fail`; a transient one is thrown to be retried. Then delegates to `steps`.
     */
    async runStep(node, op, ctx): Promise<StepOutcome> {
      if (op === 'deploy' && ctx.phase === 'start') {
        try {
          await setBootDevice(node, 'pxe', ctx.signal);
        } catch (err) {
          if (err instanceof DriverError && err.kind === 'permanent') {
            return { kind: 'fail', message: `deploy: setting the boot device to pxe failed: ${err.message}` };
          }
          throw err;
        }
      }
      return options.steps.runStep(node, op, ctx);
    },
  };
}
