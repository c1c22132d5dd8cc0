/** The real clock and id generator (the tests use test/support/fake-clock.ts instead). */
import { randomUUID } from 'node:crypto';
import type { Clock, Ids } from '../../ports/clock.js';

export function createSystemClock(): Clock {
  return {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      // Node timers cap at ~24.8 days; longer deadlines re-arm in steps.
      const MAX = 2 ** 31 - 1;
      let handle: NodeJS.Timeout;
      const arm = (left: number): void => {
        handle = setTimeout(() => (left > MAX ? arm(left - MAX) : fn()), Math.min(Math.max(0, left), MAX));
        handle.unref?.();
      };
      arm(ms);
      return () => clearTimeout(handle);
    },
  };
}

export function createUuidIds(): Ids {
  return { next: () => randomUUID() };
}
