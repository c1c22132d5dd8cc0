/** Who is asking: a tenant and a role (api.md "Auth"). */
export const Roles = ['admin', 'member', 'reader'] as const;
export type Role = (typeof Roles)[number];

export interface Principal {
  /** A stable, non-secret label for audit (`tenant:role#n`), never the token. */
  id: string;
  tenant: string;
  role: Role;
}

/** Internal actors (workers, timers, sync) act as this principal in the audit trail. */
export const SYSTEM: Principal = { id: 'system', tenant: '*', role: 'admin' };

export const canSee = (p: Principal, owner: string): boolean => p.role === 'admin' || p.tenant === owner;
export const canAct = (p: Principal): boolean => p.role !== 'reader';
