/** The real clock and id generator (the tests use test/support/fake-clock.ts instead). */
import { randomFillSync } from 'node:crypto';
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

/**
 * UUIDv7 ids (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits. Ids made later sort
 * later, so the events' `id` index (and any other index on an id) grows at its end instead of
 * dirtying a random page per insert. Within one millisecond the order is random (still unique:
 * 74 random bits). `now` is injectable for tests; it defaults to the system clock.
 */
export function createUuidIds(now: () => number = Date.now): Ids {
  const pool = Buffer.alloc(16 * 512);
  let offset = pool.length;
  return {
    next() {
      if (offset === pool.length) {
        randomFillSync(pool);
        offset = 0;
      }
      const b = pool.subarray(offset, offset + 16);
      offset += 16;
      const ms = now();
      const high = Math.floor(ms / 0x1_0000_0000); // top 16 of the 48 bits
      const low = ms >>> 0;
      b[0] = high >>> 8; b[1] = high & 0xff;
      b[2] = low >>> 24; b[3] = (low >>> 16) & 0xff; b[4] = (low >>> 8) & 0xff; b[5] = low & 0xff;
      b[6] = 0x70 | (b[6]! & 0x0f); // version 7
      b[8] = 0x80 | (b[8]! & 0x3f); // variant 10
      const h = b.toString('hex');
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    },
  };
}
