/** A clock the test moves by hand: timers fire only on advance(), in due order. */
import type { Clock, Ids } from '../../src/ports/clock.js';

export interface FakeClock extends Clock {
  advance(ms: number): void;
  set(ms: number): void;
  pending(): number;
}

export function createFakeClock(start = Date.parse('2026-01-01T00:00:00Z')): FakeClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { due: number; fn: () => void }>();
  const fireDue = (): void => {
    for (;;) {
      let next: [number, { due: number; fn: () => void }] | null = null;
      for (const entry of timers) if (entry[1].due <= now && (!next || entry[1].due < next[1].due)) next = entry;
      if (!next) return;
      timers.delete(next[0]);
      next[1].fn();
    }
  };
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = ++seq;
      timers.set(id, { due: now + Math.max(0, ms), fn });
      return () => void timers.delete(id);
    },
    advance(ms) {
      now += ms;
      fireDue();
    },
    set(ms) {
      now = ms;
      fireDue();
    },
    pending: () => timers.size,
  };
}

export function createSequentialIds(prefix = 'id'): Ids {
  let n = 0;
  return { next: () => `${prefix}-${String(++n).padStart(6, '0')}` };
}
