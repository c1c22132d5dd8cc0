/**
 * `ironclad::test::resource` (docs/stacks.md): a resource that exists only in Ironclad, for tests
 * and demos. Create makes a new physical id, an update in place keeps it (the engine decides
 * replacement, which is a create of a new record), delete forgets it. `<action>_delay_ms` waits
 * on the injected clock (so tests move time by hand), `fail_on` fails the action with
 * `resource_failed`. `hold_on` needs nothing here: the stack actor holds the action after the
 * worker's success until the signal arrives. Attribute: `output` (the `value` property).
 */
import type { Clock, Ids } from '../../../ports/clock.js';
import { TEST_RESOURCE } from '../../../domain/stack/resource-types.js';
import type { StackWorkOrder } from '../../../domain/stack/work.js';
import { ResourceActionFailed, type ResourceOutputs, type ResourceWorker, type ResourceWorkContext } from '../resource-worker.js';

export function createTestResourceWorker(deps: { clock: Clock; ids: Ids }): ResourceWorker {
  const { clock, ids } = deps;

  function delay(ms: number, signal: AbortSignal): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        cancel();
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const cancel = clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  return {
    type: TEST_RESOURCE,
    async run(order: StackWorkOrder, ctx: ResourceWorkContext): Promise<ResourceOutputs> {
      const p = order.properties;
      const verb = order.action.toLowerCase();
      const ms = p[`${verb}_delay_ms`];
      await delay(typeof ms === 'number' ? ms : 0, ctx.signal);
      const failOn = Array.isArray(p['fail_on']) ? p['fail_on'] : [];
      if (failOn.includes(verb)) throw new ResourceActionFailed('resource_failed', `${order.name} refused to ${verb} (fail_on)`);
      if (order.action === 'DELETE') return null;
      const physicalId = order.action === 'CREATE' || order.physical_id === null ? `test-${ids.next()}` : order.physical_id;
      return { physical_id: physicalId, attributes: { output: p['value'] ?? null } };
    },
  };
}
