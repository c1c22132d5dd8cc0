/**
 * `ironclad::baremetal::server` (docs/stacks.md "Resource types"): a claimed node, deployed
 * through the node's own lifecycle. The node actor is the only authority on claims, so this
 * worker never decides that a node is free: it asks, and moves on when refused.
 *
 * Crash safety: claim ids are `<record_id>/<action_id>/<n>`, so a redelivered order (or any later
 * action of the same record) finds the node its record already holds in the read model and
 * continues with it; it never claims a second node for one record.
 */
import { nextProvisionState } from '../../../../machines/node/node.model.js';
import { IroncladError } from '../../../domain/errors.js';
import { SYSTEM } from '../../../domain/principal.js';
import type { NodeCommand } from '../../../domain/node/commands.js';
import type { NodeState } from '../../../domain/node/state.js';
import { BAREMETAL_SERVER } from '../../../domain/stack/resource-types.js';
import type { StackWorkOrder } from '../../../domain/stack/work.js';
import type { Clock, Ids } from '../../../ports/clock.js';
import type { CandidateQuery } from '../../read-models/nodes.js';
import type { CommandOutcome, RequestMeta } from '../../nodes/node-service.js';
import { ResourceActionFailed, type ResourceOutputs, type ResourceWorkContext, type ResourceWorker } from '../resource-worker.js';
import type { NodeWaiter } from './node-waiter.js';

export interface BaremetalServerDeps {
  /** The node service: `send` as SYSTEM, `current` for the actor's (authoritative) state. */
  nodes: {
    send(principal: typeof SYSTEM, id: string, command: NodeCommand, meta: RequestMeta): Promise<CommandOutcome>;
    current(principal: typeof SYSTEM, id: string): Promise<NodeState>;
  };
  nodesRM: { candidates(q: CandidateQuery): NodeState[]; claimedBy(stackId: string): NodeState[] };
  waiter: NodeWaiter;
  ids: Ids;
  clock: Clock;
  /** How often a waiting worker heartbeats its delivery (default 10 s of `clock` time). */
  heartbeatMs?: number;
}

interface Spec {
  resource_class: string;
  traits: string[];
  max_attempts: number;
}

/** A node this record holds. */
interface Held {
  id: string;
  name: string | null;
  claim_id: string;
}

type Run = { order: StackWorkOrder; ctx: ResourceWorkContext; meta: RequestMeta };

const PAGE = 16;
/** Answers of the node actor that are decisions (move on); anything else (a timeout...) may be retried. */
const REFUSALS: ReadonlySet<string> = new Set(['not_found', 'invalid_state', 'in_maintenance', 'node_busy', 'queue_full']);
const SEND_ATTEMPTS = 3;

export function createBaremetalServerWorker(deps: BaremetalServerDeps): ResourceWorker {
  const { nodes, nodesRM, waiter, ids, clock } = deps;
  const heartbeatMs = deps.heartbeatMs ?? 10_000;

  const claimPrefix = (order: StackWorkOrder): string => `${order.record_id}/`;

  /** The nodes this record holds, by the read model (claims of the stack whose id names the record). */
  function heldBy(r: Run): Held[] {
    const prefix = claimPrefix(r.order);
    return nodesRM.claimedBy(r.ctx.stack.id)
      .filter((n) => n.allocation?.claim_id.startsWith(prefix))
      .map((n) => ({ id: n.id, name: n.name, claim_id: n.allocation!.claim_id }));
  }

  /** The actor's state of a node, or null when it is gone. */
  async function load(id: string): Promise<NodeState | null> {
    try {
      return await nodes.current(SYSTEM, id);
    } catch (err) {
      if (err instanceof IroncladError && err.code === 'not_found') return null;
      throw err;
    }
  }

  /** Waits until the projected node is at least at `revision` and `taskId` no longer runs there. */
  function taskEnded(r: Run, id: string, taskId: string, revision: number): Promise<NodeState> {
    return waiter.until(id, (s) => s.revision >= revision && s.op?.task_id !== taskId, { signal: r.ctx.signal, onChange: () => r.ctx.heartbeat() });
  }

  /**
   * Sends a node command as SYSTEM, retrying an answer that is not a decision (e.g. a cluster
   * `command_timeout`): claims and releases are idempotent by claim id and a repeated deploy or
   * undeploy coalesces into the running task, so a retry never applies a command twice.
   */
  async function send(r: Run, id: string, command: NodeCommand): Promise<CommandOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await nodes.send(SYSTEM, id, command, r.meta);
      } catch (err) {
        if (!(err instanceof IroncladError) || REFUSALS.has(err.code) || attempt >= SEND_ATTEMPTS) throw err;
        r.ctx.signal.throwIfAborted();
      }
    }
  }

  async function release(r: Run, h: Held): Promise<void> {
    try {
      await send(r, h.id, { type: 'ReleaseNode', claim_id: h.claim_id });
    } catch (err) {
      // Gone, or already held by another claim: either way this record no longer holds it.
      if (!(err instanceof IroncladError) || !REFUSALS.has(err.code)) throw err;
    }
  }

  /** Sends a provision verb as SYSTEM; a refusal comes back as its message. */
  async function provision(r: Run, h: Held, verb: 'deploy' | 'undeploy'): Promise<CommandOutcome | string> {
    try {
      return await send(r, h.id, { type: 'RequestProvision', verb, params: {}, on_busy: 'reject', callback_url: null, task_id: ids.next() });
    } catch (err) {
      if (err instanceof IroncladError && REFUSALS.has(err.code)) return err.message;
      throw err;
    }
  }

  /**
   * Drives a held node to `active` through its lifecycle (deploy as SYSTEM), continuing whatever
   * is already under way. Returns null on success, else why it failed.
   */
  async function deploy(r: Run, h: Held): Promise<string | null> {
    for (;;) {
      r.ctx.signal.throwIfAborted();
      const s = await load(h.id);
      // Only this record's own delete releases its claim: never go on to claim another node then.
      if (!s || s.allocation?.claim_id !== h.claim_id) {
        throw new ResourceActionFailed('resource_failed', `Server "${r.order.name}": node ${label(h)} ${s ? 'was released' : 'was deleted'} while the server was being created.`);
      }
      if (s.op) {
        await taskEnded(r, h.id, s.op.task_id, s.revision);
        continue;
      }
      if (s.provision_state === 'active') return null;
      if (s.provision_state !== 'available' || s.queue.length > 0 || s.maintenance) return whyNot(s);
      const out = await provision(r, h, 'deploy');
      if (typeof out === 'string') return out;
      await taskEnded(r, h.id, out.task!.id, out.state.revision);
    }
  }

  /** Claims the next candidate in name order (skipping `tried`); null when none is left. */
  async function claimNext(r: Run, spec: Spec, tried: Set<string>, refusals: string[]): Promise<Held | null> {
    const { stack } = r.ctx;
    for (;;) {
      const page = nodesRM.candidates({ owner: stack.owner, resource_class: spec.resource_class, traits: spec.traits, exclude: [...tried], limit: PAGE });
      if (page.length === 0) return null;
      for (const c of page) {
        r.ctx.signal.throwIfAborted();
        tried.add(c.id);
        const claim_id = `${claimPrefix(r.order)}${r.order.action_id}/${tried.size}`;
        try {
          await send(r, c.id, { type: 'ClaimNode', claim_id, stack_id: stack.id, resource_name: r.order.name, owner: stack.owner });
          return { id: c.id, name: c.name, claim_id };
        } catch (err) {
          // Not a decision after retries: fail; the record's delete releases a claim that was granted.
          if (!(err instanceof IroncladError) || !REFUSALS.has(err.code)) throw err;
          refusals.push(`${label(c)}: claim refused (${err.message})`); // taken by another stack in the meantime, or changed
        }
      }
    }
  }

  async function create(r: Run): Promise<ResourceOutputs> {
    const spec = specOf(r.order.properties);
    const tried = new Set<string>();
    const refusals: string[] = [];
    const failures: string[] = [];
    let held: Held | null = heldBy(r)[0] ?? null;
    for (let attempt = 1; ; attempt++) {
      if (!held) held = await claimNext(r, spec, tried, refusals);
      if (!held) throw new ResourceActionFailed('no_capacity', noCapacity(r, spec, failures, refusals));
      tried.add(held.id);
      const failed = await deploy(r, held);
      if (failed === null) return outputs(held);
      failures.push(`${label(held)}: deploy failed: ${failed}`);
      await release(r, held); // the failed node keeps its state for an operator, but no claim
      held = null;
      if (attempt >= spec.max_attempts) {
        throw new ResourceActionFailed('resource_failed', `Server "${r.order.name}": deploy failed on ${failures.length} node(s), max_attempts ${spec.max_attempts} reached: ${failures.join('; ')}.`);
      }
    }
  }

  /** Undeploys every node the record holds (deleting → cleaning → available), then releases it. */
  async function remove(r: Run): Promise<ResourceOutputs> {
    const held = heldBy(r);
    const pid = r.order.physical_id;
    if (pid && !held.some((h) => h.id === pid)) {
      const s = await load(pid);
      if (s?.allocation?.claim_id.startsWith(claimPrefix(r.order))) held.push({ id: s.id, name: s.name, claim_id: s.allocation.claim_id });
    }
    for (const h of held) await undeploy(r, h);
    return null;
  }

  async function undeploy(r: Run, h: Held): Promise<void> {
    let asked = 0;
    for (;;) {
      r.ctx.signal.throwIfAborted();
      const s = await load(h.id);
      if (!s || s.allocation?.claim_id !== h.claim_id) return; // not ours any more: never touch it
      if (s.op) {
        await taskEnded(r, h.id, s.op.task_id, s.revision);
        continue;
      }
      if (s.provision_state !== 'available' && asked < 2 && nextProvisionState(s.provision_state, 'delete') !== null) {
        asked++;
        const out = await provision(r, h, 'undeploy');
        if (typeof out !== 'string') await taskEnded(r, h.id, out.task!.id, out.state.revision);
        continue;
      }
      // available again, or stuck in a failure state (e.g. clean failed): the server is gone
      // either way; the node keeps its state and last_error for an operator.
      await release(r, h);
      return;
    }
  }

  /** In place (only max_attempts can change without replacement): the server keeps its node. */
  async function update(r: Run): Promise<ResourceOutputs> {
    const held = heldBy(r);
    const h = held.find((x) => x.id === r.order.physical_id) ?? held[0];
    if (!h) return create(r);
    return outputs(h);
  }

  return {
    type: BAREMETAL_SERVER,
    async run(order, ctx) {
      const r: Run = { order, ctx, meta: { request_id: null, idempotency_key: null, correlation_id: order.action_id, causation_id: order.action_id } };
      // Heartbeat on the clock too: a deploy can sit in `wait call-back` with no projected change.
      let cancel = (): void => {};
      const beat = (): void => {
        ctx.heartbeat();
        cancel = clock.setTimeout(beat, heartbeatMs);
      };
      cancel = clock.setTimeout(beat, heartbeatMs);
      try {
        switch (order.action) {
          case 'CREATE':
            return await create(r);
          case 'UPDATE':
            return await update(r);
          case 'DELETE':
            return await remove(r);
          default: {
            const _exhaustive: never = order.action;
            throw new Error(`unknown action ${String(_exhaustive)}`);
          }
        }
      } finally {
        cancel();
      }
    },
  };
}

function specOf(p: Record<string, unknown>): Spec {
  const traits = Array.isArray(p['traits']) ? [...new Set(p['traits'].map(String))].sort() : [];
  const max = typeof p['max_attempts'] === 'number' && p['max_attempts'] >= 1 ? Math.floor(p['max_attempts']) : 3;
  return { resource_class: String(p['resource_class']), traits, max_attempts: max };
}

const label = (n: { id: string; name: string | null }): string => n.name ?? n.id;

/** Why a held node cannot become the server: its deploy error, maintenance, or its state. */
function whyNot(s: NodeState): string {
  if (s.maintenance) return `the node went into maintenance${s.maintenance_reason ? ` (${s.maintenance_reason})` : ''}`;
  if (s.provision_state === 'deploy failed' && s.last_error) return s.last_error;
  return `the node is in "${s.provision_state}"`;
}

const outputs = (h: Held): ResourceOutputs => ({ physical_id: h.id, attributes: { node_id: h.id, node_name: h.name } });

function noCapacity(r: Run, spec: Spec, failures: string[], refusals: string[]): string {
  const traits = spec.traits.length ? ` and traits [${spec.traits.join(', ')}]` : '';
  const tried = [...failures, ...refusals];
  const what = tried.length ? `tried ${tried.join('; ')}` : 'no candidate was available';
  return `No capacity for server "${r.order.name}": no free node of resource_class "${spec.resource_class}"${traits} `
    + `in tenant ${r.ctx.stack.owner} (available, not in maintenance, unclaimed); ${what}.`;
}
