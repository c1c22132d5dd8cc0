/**
 * Who should hold what, computed identically by every member from the same view (live members +
 * current holders), so the fleet converges without a coordinator:
 *   - partitions: each member's quota is floor(P / members) or one more; a live holder keeps its
 *     partitions up to its quota; the rest go by rendezvous hashing (highest hash of member ×
 *     partition) to members below their quota. Minimal movement: a joining member takes only the excess, a leaving member's
 *     partitions spread over the others.
 *   - leader roles: the live holder keeps the role; otherwise the rendezvous winner.
 * Pure: no IO, no clock.
 */
import { LEADER_ROLES, type LeaderRole } from './ownership.js';

export interface ClusterView {
  /** Live member ids (any order). */
  members: readonly string[];
  /** Current holder of each partition (undefined: free). */
  partitionHolders: ReadonlyMap<number, string>;
  roleHolders: ReadonlyMap<LeaderRole, string>;
}

export interface Assignment {
  partitions: string[];
  roles: Record<LeaderRole, string>;
}

function score(member: string, slot: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(`${member}|${slot}`, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // One extra avalanche round (murmur3 finalizer) so that similar member ids do not rank alike.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

function ranked(members: readonly string[], slot: string): string[] {
  return [...members].sort((a, b) => score(b, slot) - score(a, slot) || (a < b ? -1 : 1));
}

/** The target holder of every partition and role. Throws when there is no member. */
export function assign(view: ClusterView, partitions: number): Assignment {
  const members = [...new Set(view.members)].sort();
  if (members.length === 0) throw new RangeError('assign: no live member');
  const live = new Set(members);
  // Quotas: floor(P / n) each, one more for the first P mod n members, preferring those that
  // hold the most now (so the extra ones do not move), then by id (so every member agrees).
  const holding = new Map(members.map((m) => [m, 0]));
  for (const h of view.partitionHolders.values()) if (live.has(h)) holding.set(h, holding.get(h)! + 1);
  const byHolding = [...members].sort((a, b) => holding.get(b)! - holding.get(a)! || (a < b ? -1 : 1));
  const quota = new Map(byHolding.map((m, i) => [m, Math.floor(partitions / members.length) + (i < partitions % members.length ? 1 : 0)]));
  const load = new Map(members.map((m) => [m, 0]));
  const out: (string | undefined)[] = new Array<string | undefined>(partitions).fill(undefined);
  for (let p = 0; p < partitions; p++) {
    const h = view.partitionHolders.get(p);
    if (h !== undefined && live.has(h) && load.get(h)! < quota.get(h)!) {
      out[p] = h;
      load.set(h, load.get(h)! + 1);
    }
  }
  for (let p = 0; p < partitions; p++) {
    if (out[p] !== undefined) continue;
    const m = ranked(members, `p${p}`).find((c) => load.get(c)! < quota.get(c)!)!;
    out[p] = m;
    load.set(m, load.get(m)! + 1);
  }
  const roles = {} as Record<LeaderRole, string>;
  for (const r of LEADER_ROLES) {
    const h = view.roleHolders.get(r);
    roles[r] = h !== undefined && live.has(h) ? h : ranked(members, `r:${r}`)[0]!;
  }
  return { partitions: out as string[], roles };
}
