import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createUuidIds } from '../../src/adapters/system/clock.js';

describe('createUuidIds (UUIDv7)', () => {
  it('makes valid, unique version-7 UUIDs whose first 48 bits are the milliseconds', () => {
    let now = 1_795_000_000_123;
    const ids = createUuidIds(() => now);
    const made = Array.from({ length: 5000 }, () => ids.next());
    for (const id of made.slice(0, 50)) {
      expect(z.uuid().safeParse(id).success, id).toBe(true);
      expect(id[14]).toBe('7');
      expect('89ab').toContain(id[19]);
      expect(parseInt(id.slice(0, 8) + id.slice(9, 13), 16)).toBe(now);
    }
    expect(new Set(made).size).toBe(made.length);
    now += 1;
    expect(ids.next() > made.reduce((a, b) => (a > b ? a : b))).toBe(true); // a later millisecond sorts after
  });
});
