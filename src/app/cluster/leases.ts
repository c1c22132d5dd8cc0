/**
 * Partition and leader leases in a NATS KV bucket: the `Ownership` of a process in NATS mode.
 *
 * Keys (one bucket, max_age = the lease TTL, history 1):
 *   members.<member id>    this process is alive (rewritten every round)
 *   partitions.<p>         the holder of partition p
 *   leaders.<role>         the holder of a singleton role (notifier, power-sync, purge)
 * Every round (each `renewEveryMs`) a member rewrites its member key, renews each lease it holds
 * with a CAS `update(key, value, revision)`, reads the bucket, computes the same target
 * assignment as every other member (./assignment.ts) and acquires (`create`: only if free) what
 * it should hold, and releases (`delete` at its revision) what it should not.
 *
 * Self-fencing: a lease counts as held only until `sent + ttl - fenceMargin`, where `sent` is
 * the local time at which its last successful write was SENT. The server stamps the write later
 * than that and removes it `ttl` after its stamp, so a process that cannot renew stops serving
 * (its `lost` listeners run) at least `fenceMargin` before anyone else can `create` the key.
 * Even if a command were decided just before the fence and appended after it, the event store's
 * expected-revision check rejects one of the two writers.
 *
 * A process that dies without releasing is taken over once its keys expire: ttl + one round.
 * `stop()` releases everything at once (deletes), so a graceful restart hands over immediately.
 */
import { KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { QueuedIterator } from '@nats-io/transport-node';
import type { Logger } from '../../ports/logger.js';
import { getJson, isRevisionConflict } from '../../adapters/nats/kv.js';
import { assign, type ClusterView } from './assignment.js';
import { LEADER_ROLES, type LeaderListener, type LeaderRole, type Ownership, type OwnershipListener } from './ownership.js';
import { partitionOf } from '../../ports/bus.js';

export interface LeaseManagerOptions {
  kv: KV;
  /** Unique per process start (a uuid). */
  memberId: string;
  /** Shown in the lease values and /readyz, e.g. `host:port`. */
  name: string;
  partitions: number;
  /** The bucket's max_age: a lease not renewed for this long is free. */
  ttlMs: number;
  /** Default ttl / 5. */
  renewEveryMs?: number;
  /** How long before the server could expire a lease this process stops using it. Default ttl / 4. */
  fenceMarginMs?: number;
  log: Logger;
  /** Monotonic milliseconds (default performance.now). Leases run on real time: the server's TTL does. */
  now?: () => number;
}

export interface LeaseStatus {
  member: string;
  joined: boolean;
  members: string[];
  owned: number[];
  leader: LeaderRole[];
  /** Partitions held by nobody in the last view. */
  unowned: number[];
}

export interface LeaseManager extends Ownership {
  readonly memberId: string;
  /** Joins the fleet: resolves after the first round (member key written, first leases taken). */
  start(): Promise<void>;
  joined(): boolean;
  status(): LeaseStatus;
  /** Graceful leave: stops serving, deletes every lease and the member key. */
  stop(): Promise<void>;
  /**
   * Test hook: behave like a process that hangs or lost NATS — no more rounds, nothing released.
   * The fence still runs, so the leases stop counting as held before they expire on the server.
   */
  stopRenewing(): void;
  /** Resolves after the next complete round (for tests and readiness waits). */
  nextRound(): Promise<void>;
}

interface Held {
  revision: number;
  validUntil: number;
}

const MEMBER = 'members.';
const PARTITION = 'partitions.';
const LEADER = 'leaders.';

export function createLeaseManager(opts: LeaseManagerOptions): LeaseManager {
  const { kv, memberId, partitions, ttlMs, log } = opts;
  const renewEveryMs = opts.renewEveryMs ?? Math.max(50, Math.floor(ttlMs / 5));
  const margin = opts.fenceMarginMs ?? Math.floor(ttlMs / 4);
  const now = opts.now ?? (() => performance.now());
  const value = JSON.stringify({ member: memberId, name: opts.name });
  const memberKey = `${MEMBER}${memberId}`;
  const held = new Map<string, Held>(); // partition and leader keys this process holds (may be past the fence)
  const serving = new Set<string>(); // keys announced to listeners as held
  const changeListeners = new Set<OwnershipListener>();
  const leaderListeners = new Map<LeaderRole, Set<LeaderListener>>(LEADER_ROLES.map((r) => [r, new Set()]));
  let memberRev = 0;
  let lastView: ClusterView = { members: [], partitionHolders: new Map(), roleHolders: new Map() };
  let isJoined = false;
  let stopped = false;
  let renewing = true;
  let roundTimer: NodeJS.Timeout | undefined;
  let current: Promise<void> | null = null;
  let waiters: (() => void)[] = [];
  let again = false;
  let watcher: QueuedIterator<KvWatchEntry> | null = null;
  const fenceTimer = setInterval(() => announce(), Math.max(20, Math.min(200, Math.floor(margin / 4))));
  fenceTimer.unref();

  const valid = (key: string): boolean => {
    const h = held.get(key);
    return h !== undefined && now() < h.validUntil;
  };
  const ownedNow = (): Set<number> => {
    const s = new Set<number>();
    for (const k of serving) if (k.startsWith(PARTITION)) s.add(Number(k.slice(PARTITION.length)));
    return s;
  };

  /** Brings `serving` in line with the valid leases and tells the listeners (lost first). */
  function announce(): void {
    const lost: string[] = [];
    const gained: string[] = [];
    for (const k of serving) if (!valid(k)) lost.push(k);
    for (const k of held.keys()) if (!serving.has(k) && valid(k) && !stopped) gained.push(k);
    if (lost.length === 0 && gained.length === 0) return;
    for (const k of lost) {
      serving.delete(k);
      if (held.has(k)) log.warn({ key: k, member: memberId }, 'lease not renewed in time: fenced, stopped serving it');
    }
    for (const k of gained) serving.add(k);
    const parts = (ks: string[]): number[] => ks.filter((k) => k.startsWith(PARTITION)).map((k) => Number(k.slice(PARTITION.length)));
    const lostP = parts(lost);
    const gainedP = parts(gained);
    if (lostP.length > 0 || gainedP.length > 0) {
      for (const l of changeListeners) safely(() => l(gainedP, lostP));
    }
    for (const k of [...lost, ...gained]) {
      if (!k.startsWith(LEADER)) continue;
      const role = k.slice(LEADER.length) as LeaderRole;
      for (const l of leaderListeners.get(role) ?? []) safely(() => l(serving.has(k)));
    }
  }

  function safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      log.error({ err }, 'ownership listener failed');
    }
  }

  async function renew(key: string, h: Held): Promise<void> {
    const sent = now();
    try {
      h.revision = await kv.update(key, value, h.revision);
      h.validUntil = sent + ttlMs - margin;
    } catch (err) {
      if (isRevisionConflict(err)) {
        held.delete(key); // it expired and someone else took it (or it was deleted): ours no more
        log.warn({ key, member: memberId }, 'lease lost: taken by another member after it expired');
      } else {
        log.warn({ err, key }, 'lease renewal failed; will retry (fenced if it keeps failing)');
      }
    }
  }

  async function acquire(key: string): Promise<void> {
    const sent = now();
    try {
      const revision = await kv.create(key, value);
      held.set(key, { revision, validUntil: sent + ttlMs - margin });
    } catch (err) {
      if (!isRevisionConflict(err)) log.warn({ err, key }, 'lease acquisition failed');
    }
  }

  async function release(key: string): Promise<void> {
    const h = held.get(key);
    held.delete(key);
    announce(); // stop serving before the key is free
    if (!h) return;
    await kv.delete(key, { previousSeq: h.revision }).catch((err: unknown) => {
      if (!isRevisionConflict(err)) log.warn({ err, key }, 'lease release failed (it will expire)');
    });
  }

  async function heartbeat(): Promise<boolean> {
    try {
      memberRev = memberRev > 0 ? await kv.update(memberKey, value, memberRev).catch(async (err: unknown) => {
        if (isRevisionConflict(err)) return kv.create(memberKey, value); // our key expired: join again
        throw err;
      }) : await kv.create(memberKey, value).catch(async (err: unknown) => {
        if (!isRevisionConflict(err)) throw err;
        const e = await kv.get(memberKey);
        return kv.update(memberKey, value, e?.revision ?? 0);
      });
      return true;
    } catch (err) {
      log.warn({ err, member: memberId }, 'member heartbeat failed');
      return false;
    }
  }

  async function readView(): Promise<ClusterView> {
    const seen = new Set<string>(); // the key lister can yield a key twice when it is rewritten meanwhile
    for await (const k of await kv.keys()) seen.add(k);
    const keys = [...seen];
    const members = keys.filter((k) => k.startsWith(MEMBER)).map((k) => k.slice(MEMBER.length));
    const partitionHolders = new Map<number, string>();
    const roleHolders = new Map<LeaderRole, string>();
    await Promise.all(keys.filter((k) => !k.startsWith(MEMBER)).map(async (k) => {
      const e = await getJson<{ member: string }>(kv, k);
      if (!e) return;
      if (k.startsWith(PARTITION)) partitionHolders.set(Number(k.slice(PARTITION.length)), e.value.member);
      else if (k.startsWith(LEADER)) roleHolders.set(k.slice(LEADER.length) as LeaderRole, e.value.member);
    }));
    return { members, partitionHolders, roleHolders };
  }

  async function round(): Promise<void> {
    const alive = await heartbeat();
    await Promise.all([...held].map(([k, h]) => renew(k, h)));
    announce();
    if (!alive || stopped || !renewing) return;
    let view: ClusterView;
    try {
      view = await readView();
    } catch (err) {
      log.warn({ err }, 'cannot read the lease bucket; keeping current leases');
      return;
    }
    if (!view.members.includes(memberId)) view = { ...view, members: [...view.members, memberId] };
    lastView = view;
    const target = assign(view, partitions);
    const work: Promise<void>[] = [];
    for (let p = 0; p < partitions; p++) {
      const key = `${PARTITION}${p}`;
      const holder = view.partitionHolders.get(p);
      if (target.partitions[p] === memberId && holder === undefined) work.push(acquire(key));
      // Hand a partition over only to a live member that wants it (it acquires on its next round).
      else if (target.partitions[p] !== memberId && held.has(key)) work.push(release(key));
    }
    for (const r of LEADER_ROLES) {
      const key = `${LEADER}${r}`;
      const holder = view.roleHolders.get(r);
      if (target.roles[r] === memberId && holder === undefined) work.push(acquire(key));
      else if (target.roles[r] !== memberId && held.has(key)) work.push(release(key));
    }
    await Promise.all(work);
    announce();
    isJoined = true;
  }

  function schedule(delay: number): void {
    if (stopped || !renewing) return;
    roundTimer = setTimeout(() => void runRound(), Math.max(0, delay));
    roundTimer.unref();
  }

  async function runRound(): Promise<void> {
    if (current) return current;
    const started = now();
    current = round().catch((err: unknown) => log.error({ err }, 'lease round failed')).finally(() => {
      current = null;
      const w = waiters;
      waiters = [];
      for (const f of w) f();
      schedule(again ? 0 : renewEveryMs - (now() - started));
      again = false;
    });
    return current;
  }

  /** A lease was released or a member joined: rebalance now rather than at the next round. */
  function poke(): void {
    if (stopped || !renewing) return;
    if (current) {
      again = true;
      return;
    }
    clearTimeout(roundTimer);
    schedule(0);
  }

  async function watch(): Promise<void> {
    try {
      watcher = await kv.watch({ include: KvWatchInclude.UpdatesOnly });
    } catch (err) {
      log.warn({ err }, 'cannot watch the lease bucket; rebalancing at each round only');
      return;
    }
    void (async () => {
      for await (const e of watcher!) {
        const joining = e.operation === 'PUT' && e.key.startsWith(MEMBER) && !lastView.members.includes(e.key.slice(MEMBER.length));
        if (e.operation !== 'PUT' || joining) poke();
      }
    })().catch((err: unknown) => log.warn({ err }, 'lease bucket watch ended'));
  }

  function unwatch(): void {
    watcher?.stop();
    watcher = null;
  }

  return {
    memberId,
    partitions,
    ownsEntity: (id) => serving.has(`${PARTITION}${partitionOf(id, partitions)}`) && valid(`${PARTITION}${partitionOf(id, partitions)}`),
    owned: () => {
      const s = ownedNow();
      for (const p of s) if (!valid(`${PARTITION}${p}`)) s.delete(p);
      return s;
    },
    onChange(listener) {
      changeListeners.add(listener);
      return () => void changeListeners.delete(listener);
    },
    isLeader: (role) => serving.has(`${LEADER}${role}`) && valid(`${LEADER}${role}`),
    onLeader(role, listener) {
      leaderListeners.get(role)!.add(listener);
      return () => void leaderListeners.get(role)!.delete(listener);
    },
    async start() {
      await watch();
      await runRound();
    },
    joined: () => isJoined && !stopped,
    status() {
      const owned = [...ownedNow()].sort((a, b) => a - b);
      return {
        member: memberId, joined: isJoined && !stopped, members: [...lastView.members].sort(), owned,
        leader: LEADER_ROLES.filter((r) => serving.has(`${LEADER}${r}`)),
        unowned: Array.from({ length: partitions }, (_, p) => p).filter((p) => !lastView.partitionHolders.has(p)),
      };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      unwatch();
      clearTimeout(roundTimer);
      // A round stuck on an unreachable server must not hold the shutdown: its KV calls time out anyway.
      await Promise.race([current, new Promise((r) => setTimeout(r, ttlMs / 2).unref())]);
      const keys = [...held.keys()];
      await Promise.all(keys.map((k) => release(k)));
      clearInterval(fenceTimer);
      if (renewing && memberRev > 0) await kv.delete(memberKey, { previousSeq: memberRev }).catch(() => undefined);
      renewing = false;
    },
    stopRenewing() {
      renewing = false;
      unwatch();
      clearTimeout(roundTimer);
    },
    nextRound() {
      return new Promise<void>((resolve) => {
        if (stopped || !renewing) return resolve();
        waiters.push(resolve);
        if (!current && renewing && !stopped) void runRound();
      });
    },
  };
}
