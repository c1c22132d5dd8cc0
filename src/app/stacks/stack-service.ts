/**
 * Stack use cases: what the HTTP routes (and the work plane, as SYSTEM) call. Every command goes
 * to the stack's actor (`decideStack` against its own folded state, appended with the expected
 * revision); answers are built from the actor's state right after the append, so they never
 * depend on read-model lag. Tenancy as for nodes: another tenant's stack is 404, a reader gets
 * 403 on commands, only an admin may set `owner`. Stack names are unique per owner among the
 * stacks that are not deleted (a deleted stack's name is released once its delete completed).
 */
import type { StackCommand, StackDecideConfig, StackDecideContext } from '../../domain/stack/commands.js';
import { decideStack } from '../../domain/stack/decide.js';
import type { StackState } from '../../domain/stack/state.js';
import type { Template } from '../../domain/stack/template.js';
import { errors } from '../../domain/errors.js';
import { canAct, canSee, SYSTEM, type Principal } from '../../domain/principal.js';
import type { Clock, Ids } from '../../ports/clock.js';
import type { ActorRuntime, PendingEvent } from '../../runtime/actor-runtime.js';
import type { CommandRouter } from '../cluster/command-router.js';
import type { NameClaimsPort } from '../nodes/node-service.js';
import type { StacksReadModel } from '../read-models/stacks.js';
import { decideOnActor, type ActorCommandOutcome, type RequestMeta } from '../actor-command.js';

export type StackCommandOutcome = ActorCommandOutcome<StackState>;

export interface StackServiceDeps {
  runtime: ActorRuntime<StackState>;
  stacks: StacksReadModel;
  clock: Clock;
  ids: Ids;
  config: StackDecideConfig;
  /** Name claims scoped to stacks (`createNameClaims(db, 'stack')`). */
  names: NameClaimsPort;
  /** Cluster mode: commands go to the owner of the stack's partition instead of the local actor. */
  router?: CommandRouter;
}

export interface CreateStackInput {
  name: string;
  template: Template;
  timeout_s: number | null;
  rollback_on_failure: boolean | null;
  callback_url: string | null;
  owner?: string;
}

export interface UpdateStackInput {
  template: Template;
  timeout_s: number | null;
  rollback_on_failure: boolean | null;
  callback_url: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function createStackService(deps: StackServiceDeps) {
  const { runtime, stacks, clock, ids, config, names } = deps;

  /**
   * Decides one command on the stack's actor: the single entry point (a bus can route it to the
   * process that owns the stack later). `principal` SYSTEM skips the tenancy check.
   */
  async function decideLocally(principal: Principal, id: string, command: StackCommand, meta: RequestMeta): Promise<StackCommandOutcome> {
    const ctx: StackDecideContext = {
      now: clock.now(), newId: () => ids.next(), principal: principal.id, idempotency_key: meta.idempotency_key, config,
    };
    return decideOnActor(runtime, 'stack', id, principal, meta, (state) => {
      if (command.type !== 'Create' && principal !== SYSTEM && (!state.exists || !canSee(principal, state.owner))) {
        throw errors.notFound('Stack', id);
      }
      const d = decideStack(command, state, ctx);
      return { events: d.events as PendingEvent[], result: d.result, state: d.state };
    });
  }

  const send = (principal: Principal, id: string, command: StackCommand, meta: RequestMeta): Promise<StackCommandOutcome> =>
    deps.router ? deps.router.send<StackCommand, StackCommandOutcome>('stack', principal, id, command, meta) : decideLocally(principal, id, command, meta);

  /**
   * A stack the principal may see, by id (the actor: authoritative, usable right after the 202)
   * or by name (the read model: the live stack of that name, else the newest deleted one).
   * Deleted stacks stay readable (DELETE_COMPLETE).
   */
  async function resolve(principal: Principal, idOrName: string): Promise<StackState> {
    if (UUID.test(idOrName)) {
      const { state } = await runtime.load(idOrName);
      if (state.exists && canSee(principal, state.owner)) return state;
    }
    const named = stacks.getByName(idOrName).filter((s) => canSee(principal, s.owner));
    const mine = named.find((s) => s.owner === principal.tenant) ?? named[0];
    if (!mine) throw errors.notFound('Stack', idOrName);
    return mine;
  }

  function requireActor(principal: Principal): void {
    if (!canAct(principal)) throw errors.forbidden('This token is read-only (role reader).');
  }

  /** Resolves (404 before 403: another tenant's stack stays invisible), then checks the role. */
  async function target(principal: Principal, idOrName: string): Promise<StackState> {
    const s = await resolve(principal, idOrName);
    requireActor(principal);
    return s;
  }

  const task = (callbackUrl: string | null) => ({ task_id: ids.next(), callback_url: callbackUrl });

  return {
    send,
    decideLocally,
    resolve,
    async create(principal: Principal, input: CreateStackInput, meta: RequestMeta): Promise<StackCommandOutcome> {
      requireActor(principal);
      if (input.owner !== undefined && principal.role !== 'admin') throw errors.forbidden('Only an admin may set owner.');
      const owner = input.owner ?? principal.tenant;
      const id = ids.next();
      if (!(await names.claim(owner, input.name, id))) throw errors.nameConflict(input.name);
      try {
        return await send(principal, id, {
          type: 'Create', name: input.name, owner, template: input.template, timeout_s: input.timeout_s,
          rollback_on_failure: input.rollback_on_failure, ...task(input.callback_url),
        }, meta);
      } catch (err) {
        await names.release(owner, input.name, id);
        throw err;
      }
    },
    async update(principal: Principal, idOrName: string, input: UpdateStackInput, meta: RequestMeta): Promise<StackCommandOutcome> {
      const s = await target(principal, idOrName);
      return send(principal, s.id, {
        type: 'Update', template: input.template, timeout_s: input.timeout_s, rollback_on_failure: input.rollback_on_failure,
        ...task(input.callback_url),
      }, meta);
    },
    async remove(principal: Principal, idOrName: string, callbackUrl: string | null, meta: RequestMeta): Promise<StackCommandOutcome> {
      const s = await target(principal, idOrName);
      return send(principal, s.id, { type: 'Delete', ...task(callbackUrl) }, meta);
    },
    /** `POST /v1/stacks/{id}/actions`: cancel_update or rollback. */
    async action(principal: Principal, idOrName: string, action: 'cancel_update' | 'rollback', callbackUrl: string | null, meta: RequestMeta): Promise<StackCommandOutcome> {
      const s = await target(principal, idOrName);
      const type = action === 'cancel_update' ? 'CancelUpdate' : 'Rollback';
      return send(principal, s.id, { type, ...task(callbackUrl) }, meta);
    },
    async signal(principal: Principal, idOrName: string, name: string, status: 'complete' | 'fail', reason: string | null, meta: RequestMeta): Promise<StackCommandOutcome> {
      const s = await target(principal, idOrName);
      return send(principal, s.id, { type: 'Signal', name, status, reason }, meta);
    },
    /** Releases the name of a stack whose delete completed (so it can be reused). */
    async releaseName(s: StackState): Promise<void> {
      if (s.deleted && s.name !== null) await names.release(s.owner, s.name, s.id);
    },
  };
}

export type StackService = ReturnType<typeof createStackService>;
