/**
 * Who serves what in this process. In NATS mode (src/app/cluster/leases.ts) a process owns the
 * partitions whose lease it holds and leads the singleton roles whose lease it holds; embedded
 * (one process) it owns everything and leads everything.
 *
 * Guarantees every implementation keeps:
 *   - `ownsEntity(id)` is true only while the lease of `partitionOf(id)` is held AND still inside
 *     its self-fencing deadline (a process that cannot renew in time stops answering true before
 *     another process can acquire the lease);
 *   - listeners are called after the change is visible through `owned()` / `isLeader()`;
 *     `lost` listeners run before the partition can be acquired by another process only as far
 *     as the fencing margin allows, so they must be quick (evict caches, stop timers);
 *   - a listener that throws does not stop the others.
 */
import { partitionOf } from '../../ports/bus.js';

export const LEADER_ROLES = ['notifier', 'power-sync', 'purge'] as const;
export type LeaderRole = (typeof LEADER_ROLES)[number];

export type OwnershipListener = (acquired: number[], lost: number[]) => void;
export type LeaderListener = (leader: boolean) => void;

export interface Ownership {
  /** True while `partitionOf(id)` is leased by this process. */
  ownsEntity(id: string): boolean;
  /** The partitions this process holds now. */
  owned(): ReadonlySet<number>;
  /** Called with the partitions gained and lost at each change; returns an unsubscribe. */
  onChange(listener: OwnershipListener): () => void;
  isLeader(role: LeaderRole): boolean;
  /** Called when this process gains (`true`) or loses (`false`) a role; returns an unsubscribe. */
  onLeader(role: LeaderRole, listener: LeaderListener): () => void;
  /** The number of partitions (`IRONCLAD_PARTITIONS`). */
  readonly partitions: number;
}

/** The single-process ownership: every partition, every role, forever. Listeners are never called. */
export function embeddedOwnership(partitions = 1): Ownership {
  const all: ReadonlySet<number> = new Set(Array.from({ length: partitions }, (_, p) => p));
  return {
    partitions,
    ownsEntity: () => true,
    owned: () => all,
    onChange: () => () => {},
    isLeader: () => true,
    onLeader: () => () => {},
  };
}

/** `partitionOf` bound to an ownership's partition count (for callers that only hold an Ownership). */
export function partitionOfEntity(ownership: Pick<Ownership, 'partitions'>, id: string): number {
  return partitionOf(id, ownership.partitions);
}
