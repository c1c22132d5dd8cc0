/**
 * Claims on the node actor, given/when/then (node-lifecycle.md "Claims", api.md "Scheduler" and
 * "Odd cases"): who may claim, what a claimed node refuses, and release.
 */
import { describe, expect, it } from 'vitest';
import type { NodeEvent } from '../../machines/node/node.events.js';
import type { NodeCommand } from '../../src/domain/node/commands.js';
import { decideNode } from '../../src/domain/node/decide.js';
import { SYSTEM } from '../../src/domain/principal.js';
import { allowedActionsNow } from '../../src/domain/node/rules.js';
import { decideContext, ev, foldNode, given, history, queued } from '../support/given.js';

const claim = (o: Partial<Extract<NodeCommand, { type: 'ClaimNode' }>> = {}): NodeCommand => ({
  type: 'ClaimNode', claim_id: 'claim-1', stack_id: 'stack-1', resource_name: 'server', owner: 'acme', ...o,
});
const release = (claimId = 'claim-1'): NodeCommand => ({ type: 'ReleaseNode', claim_id: claimId });
const released = (claimId = 'claim-1'): NodeEvent => ({ type: 'NodeReleased', data: { stack_id: 'stack-1', resource_name: 'server', claim_id: claimId } });
const claimedAvailable = (): NodeEvent[] => [...history.available(), ev.claimed()];

describe('ClaimNode', () => {
  it('grants a claim on an available, idle, unclaimed node of the same owner', () => {
    const d = given(history.available()).when(claim()).then([{ type: 'NodeClaimed', data: { stack_id: 'stack-1', resource_name: 'server', claim_id: 'claim-1' } }]);
    expect(d.state.allocation).toEqual({ stack_id: 'stack-1', resource_name: 'server', claim_id: 'claim-1' });
  });

  it('answers the same claim id again with an idempotent success and no event', () => {
    const d = given(claimedAvailable()).when(claim()).decide();
    expect(d.events).toEqual([]);
    expect(d.state.allocation?.claim_id).toBe('claim-1');
  });

  it('refuses a second claim with invalid_state naming the stack that holds the node', () => {
    const err = given(claimedAvailable()).when(claim({ claim_id: 'claim-2', stack_id: 'stack-2' })).thenThrows('invalid_state', {
      allocation: { stack_id: 'stack-1', resource_name: 'server' },
    });
    expect(err.message).toContain('stack-1');
  });

  it('refuses the same claim id from another stack or resource (ids are not trusted to be unique)', () => {
    given(claimedAvailable()).when(claim({ stack_id: 'stack-2' })).thenThrows('invalid_state');
    given(claimedAvailable()).when(claim({ resource_name: 'other' })).thenThrows('invalid_state');
  });

  it("refuses another tenant's node with not_found (it is invisible to that stack)", () => {
    given(history.available()).when(claim({ owner: 'other' })).thenThrows('not_found');
  });

  it('refuses a node in maintenance with in_maintenance', () => {
    given([...history.available(), ev.maintenanceSet('disk swap')]).when(claim()).thenThrows('in_maintenance');
  });

  it('refuses a node with an operation running with node_busy', () => {
    given(history.cleaning()).when(claim()).thenThrows('node_busy');
  });

  it('refuses a node with a queued task with node_busy', () => {
    const g = given([...history.available(), ev.powerStarted('task-p', 'op-p', 'step-p'), queued('task-q', 'manage')]);
    g.when(claim()).thenThrows('node_busy');
  });

  it('refuses a node that is not available (manageable, active, deploy failed) with invalid_state', () => {
    given(history.manageable()).when(claim()).thenThrows('invalid_state', { current_state: 'manageable' });
    given(history.active()).when(claim()).thenThrows('invalid_state', { current_state: 'active' });
    given(history.deployFailed()).when(claim()).thenThrows('invalid_state', { current_state: 'deploy failed' });
  });

  it('gives exactly one of two racing claims: the second decides against the first one’s event', () => {
    const first = decideNode(claim({ claim_id: 'a', stack_id: 'stack-a' }), foldNode(history.available()), decideContext());
    expect(first.events.map((e) => e.type)).toEqual(['NodeClaimed']);
    expect(() => decideNode(claim({ claim_id: 'b', stack_id: 'stack-b' }), first.state, decideContext())).toThrow(/claimed by stack stack-a/);
  });
});

describe('ReleaseNode', () => {
  it('releases with the matching claim id', () => {
    const d = given(claimedAvailable()).when(release()).then([{ type: 'NodeReleased', data: { stack_id: 'stack-1', resource_name: 'server', claim_id: 'claim-1' } }]);
    expect(d.state.allocation).toBeNull();
  });

  it('is an idempotent success on a node that holds no claim', () => {
    given([...claimedAvailable(), released()]).when(release()).thenIgnored();
  });

  it('refuses another claim id with invalid_state and keeps the allocation', () => {
    given(claimedAvailable()).when(release('claim-x')).thenThrows('invalid_state', { allocation: { stack_id: 'stack-1' } });
  });

  it('lets the node be claimed again after the release', () => {
    given([...claimedAvailable(), released()]).when(claim({ claim_id: 'claim-2', stack_id: 'stack-2' })).then(['NodeClaimed']);
  });
});

describe('a claimed node', () => {
  it("refuses a user's provision verb with invalid_state naming the stack", () => {
    const err = given(claimedAvailable()).when({
      type: 'RequestProvision', verb: 'deploy', params: {}, on_busy: 'reject', callback_url: null, task_id: 't-1',
    }).thenThrows('invalid_state', { allocation: { stack_id: 'stack-1', resource_name: 'server' }, allowed_actions: [] });
    expect(err.message).toContain('claimed by stack stack-1');
  });

  it("refuses a user's undeploy of the stack's active node", () => {
    given([...history.active(), ev.claimed()]).when({
      type: 'RequestProvision', verb: 'undeploy', params: {}, on_busy: 'queue', callback_url: null, task_id: 't-1',
    }).thenThrows('invalid_state');
  });

  it('accepts the SYSTEM principal’s deploy (the stack drives its node)', () => {
    given(claimedAvailable(), { principal: SYSTEM.id }).when({
      type: 'RequestProvision', verb: 'deploy', params: {}, on_busy: 'reject', callback_url: null, task_id: 't-1',
    }).then(['TaskCreated', 'ProvisionActionStarted', 'StepStarted']);
  });

  it('shows no allowed actions while claimed, and the verbs again once released', () => {
    expect(allowedActionsNow(foldNode(claimedAvailable()))).toEqual([]);
    expect(allowedActionsNow(foldNode([...claimedAvailable(), released()]))).toContain('deploy');
  });

  it('cannot be deleted (invalid_state) until released', () => {
    given(claimedAvailable()).when({ type: 'Delete' }).thenThrows('invalid_state', { allocation: { stack_id: 'stack-1' } });
    given([...claimedAvailable(), released()]).when({ type: 'Delete' }).then(['NodeDeleted']);
  });

  it("refuses a user's cancel of the stack's provision task; the stack (SYSTEM) may still abort it", () => {
    const h = [...history.waitCallBack(), ev.claimed()];
    const taskId = Object.keys(foldNode(h).tasks)[0]!;
    const cancel: NodeCommand = { type: 'CancelTask', task_id: taskId, abort_task_id: 't-abort' };
    const err = given(h).when(cancel).thenThrows('invalid_state', { allocation: { stack_id: 'stack-1' } });
    expect(err.message).toContain('claimed by stack stack-1');
    expect(given(h, { principal: SYSTEM.id }).when(cancel).decide().events.map((e) => e.type)).toContain('TaskCreated');
  });

  it('still takes maintenance (an operator may always fence a machine)', () => {
    given(claimedAvailable()).when({ type: 'SetMaintenance', reason: 'fan' }).then(['MaintenanceSet']);
  });
});
