/**
 * Node use cases: what the HTTP routes (and the CLI) call. Each command goes to the node's
 * actor, which decides against its own state and appends; answers are built from the actor's
 * state right after the append, so they never depend on read-model lag.
 */
import type { NodeEnrolledData } from '../../../machines/node/node.events.js';
import type { DecideContext, NodeCommand, NodeDecideConfig } from '../../domain/node/commands.js';
import { decideNode } from '../../domain/node/decide.js';
import type { NodeState } from '../../domain/node/state.js';
import { errors } from '../../domain/errors.js';
import { canAct, canSee, SYSTEM, type Principal } from '../../domain/principal.js';
import { sealSecrets } from '../../domain/secrets.js';
import type { Clock, Ids } from '../../ports/clock.js';
import type { SecretBox } from '../../ports/secrets.js';
import type { ActorRuntime, PendingEvent } from '../../runtime/actor-runtime.js';
import { decideOnActor, type ActorCommandOutcome, type RequestMeta } from '../actor-command.js';
import type { NodesReadModel } from '../read-models/nodes.js';
import type { NameClaims } from '../read-models/name-claims.js';
import type { CommandRouter } from '../cluster/command-router.js';

export type { RequestMeta } from '../actor-command.js';

export type CommandOutcome = ActorCommandOutcome<NodeState>;

export interface NodeServiceDeps {
  runtime: ActorRuntime<NodeState>;
  nodes: NodesReadModel;
  clock: Clock;
  ids: Ids;
  box: SecretBox;
  config: NodeDecideConfig;
  names: NameClaimsPort;
  /** Cluster mode: commands go to the owner of the node's partition instead of the local actor. */
  router?: CommandRouter;
  /** Cluster mode: the id of a new node (deterministic per Idempotency-Key, so a retried enroll is the same command). */
  newNodeId?: (principal: Principal, input: EnrollInput, meta: RequestMeta) => string;
}

/** Name claims, local (SQLite) or shared (NATS KV). */
export type NameClaimsPort = {
  [K in 'claim' | 'release']: (...args: Parameters<NameClaims[K]>) => ReturnType<NameClaims[K]> | Promise<ReturnType<NameClaims[K]>>;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type EnrollInput = Omit<NodeEnrolledData, 'owner'> & { owner?: string };

export function createNodeService(deps: NodeServiceDeps) {
  const { runtime, nodes, clock, ids, box, config, names } = deps;

  /** Decides on this process's actor (embedded mode; in cluster mode, on the partition owner). */
  async function decideLocally(principal: Principal, id: string, command: NodeCommand, meta: RequestMeta): Promise<CommandOutcome> {
    const ctx: DecideContext = {
      now: clock.now(), newId: () => ids.next(), principal: principal.id, idempotency_key: meta.idempotency_key, config,
    };
    return decideOnActor(runtime, 'node', id, principal, meta, (state) => {
      if (command.type !== 'Enroll' && principal !== SYSTEM && (!state.exists || state.deleted || !canSee(principal, state.owner))) {
        throw errors.notFound('Node', id);
      }
      const d = decideNode(command, state, ctx);
      return { events: d.events as PendingEvent[], result: d.result, state: d.state };
    });
  }

  const send = (principal: Principal, id: string, command: NodeCommand, meta: RequestMeta): Promise<CommandOutcome> =>
    deps.router ? deps.router.send<NodeCommand, CommandOutcome>('node', principal, id, command, meta) : decideLocally(principal, id, command, meta);

  /**
   * Resolves an id or a name to a node the principal may see. Ids go to the actor (authoritative,
   * so a node is usable right after its 201); names go through the read model.
   */
  async function resolve(principal: Principal, idOrName: string): Promise<NodeState> {
    if (UUID.test(idOrName)) {
      const { state } = await runtime.load(idOrName);
      if (state.exists && !state.deleted && canSee(principal, state.owner)) return state;
    }
    const named = nodes.getByName(idOrName).filter((n) => canSee(principal, n.owner));
    const mine = named.find((n) => n.owner === principal.tenant) ?? named[0];
    if (!mine) throw errors.notFound('Node', idOrName);
    return mine;
  }

  function requireActor(principal: Principal): void {
    if (!canAct(principal)) throw errors.forbidden('This token is read-only (role reader).');
  }

  return {
    send,
    decideLocally,
    resolve,
    async enroll(principal: Principal, input: EnrollInput, meta: RequestMeta): Promise<CommandOutcome> {
      requireActor(principal);
      if (input.owner !== undefined && principal.role !== 'admin') throw errors.forbidden('Only an admin may set owner.');
      const owner = input.owner ?? principal.tenant;
      const id = deps.newNodeId?.(principal, input, meta) ?? ids.next();
      if (input.name !== null && !(await names.claim(owner, input.name, id))) throw errors.nameConflict(input.name);
      const data: NodeEnrolledData = { ...input, owner, driver_info: sealSecrets(input.driver_info, box) };
      try {
        return await send(principal, id, { type: 'Enroll', data }, meta);
      } catch (err) {
        if (input.name !== null) await names.release(owner, input.name, id);
        throw err;
      }
    },
    async update(principal: Principal, idOrName: string, changes: Partial<Omit<NodeEnrolledData, 'owner' | 'driver'>>, ifMatch: number | null, meta: RequestMeta): Promise<CommandOutcome> {
      const node = await resolve(principal, idOrName); // 404 before 403: another tenant's node stays invisible
      requireActor(principal);
      const rename = changes.name !== undefined && changes.name !== null && changes.name !== node.name ? changes.name : null;
      if (rename !== null && !(await names.claim(node.owner, rename, node.id))) throw errors.nameConflict(rename);
      const sealed = changes.driver_info ? { ...changes, driver_info: sealSecrets(changes.driver_info, box) } : changes;
      try {
        const out = await send(principal, node.id, { type: 'Update', changes: sealed, if_match: ifMatch }, meta);
        if (changes.name !== undefined && node.name !== null && changes.name !== node.name) await names.release(node.owner, node.name, node.id);
        return out;
      } catch (err) {
        if (rename !== null) await names.release(node.owner, rename, node.id);
        throw err;
      }
    },
    async remove(principal: Principal, idOrName: string, meta: RequestMeta): Promise<CommandOutcome> {
      const node = await resolve(principal, idOrName);
      requireActor(principal);
      const out = await send(principal, node.id, { type: 'Delete' }, meta);
      if (node.name !== null) await names.release(node.owner, node.name, node.id);
      return out;
    },
    async command(principal: Principal, idOrName: string, command: NodeCommand, meta: RequestMeta): Promise<CommandOutcome> {
      const node = await resolve(principal, idOrName);
      requireActor(principal);
      // Command parameters may carry secrets (rescue_password): they are stored sealed, like driver_info.
      const sealed = command.type === 'RequestProvision' ? { ...command, params: sealSecrets(command.params, box) } : command;
      return send(principal, node.id, sealed, meta);
    },
    /** The actor's current state (authoritative), for a principal allowed to see it. */
    current: resolve,
  };
}

export type NodeService = ReturnType<typeof createNodeService>;
