/**
 * The subject helpers of the bus port are part of the wire contract (every process and every
 * subscriber must compute the same subjects), so their values are pinned here.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  commandPattern, commandSubject, eventFilter, eventSubject, partitionOf, settlementFor, subjectMatches, subjectToken,
} from '../../src/ports/bus.js';
import { DriverError } from '../../src/ports/driver.js';

describe('bus subjects', () => {
  it('partitions by FNV-1a of the entity id (pinned values: changing the hash re-routes every entity)', () => {
    // Reference FNV-1a 32-bit vectors: "a" → 0xe40c292c, "foobar" → 0xbf9cf968.
    expect(partitionOf('a', 2 ** 32 - 1)).toBe(0xe40c292c);
    expect(partitionOf('foobar', 2 ** 32 - 1)).toBe(0xbf9cf968);
    expect(partitionOf('a', 16)).toBe(12);
    expect(partitionOf('00000000-0000-4000-8000-000000000001', 16)).toBe(2);
    expect(partitionOf('ünï', 7)).toBe(3);
    expect(() => partitionOf('a', 0)).toThrow(RangeError);
  });

  it('spreads uuids over the partitions', () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[partitionOf(randomUUID(), 16)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800); // 1000 expected per partition
  });

  it('builds command subjects and the patterns partition owners serve', () => {
    const id = '00000000-0000-4000-8000-000000000001';
    expect(commandSubject(id, 16)).toBe(`ironclad.cmd.2.${id}`);
    expect(subjectMatches(commandPattern(2), commandSubject(id, 16))).toBe(true);
    expect(subjectMatches(commandPattern(3), commandSubject(id, 16))).toBe(false);
    expect(subjectMatches(commandPattern(), commandSubject(id, 16))).toBe(true);
  });

  it('escapes tenants and ids so they stay one token and can never be wildcards', () => {
    expect(subjectToken('acme')).toBe('acme');
    expect(subjectToken('a.b *>c%')).toBe('a%2Eb%20%2A%3Ec%25');
    expect(decodeURIComponent(subjectToken('a.b *>c%ü'))).toBe('a.b *>c%ü');
    expect(subjectToken('')).toBe('%00');
    const e = { entity_type: 'node', entity_id: 'n.1', type: 'NodeEnrolled' };
    expect(eventSubject('team.red', e)).toBe('ironclad.events.team%2Ered.node.n%2E1.NodeEnrolled');
    expect(eventSubject('team.red', e).split('.')).toHaveLength(6);
  });

  it('matches subjects the way NATS does', () => {
    expect(subjectMatches('ironclad.events.>', 'ironclad.events.t.node.1.X')).toBe(true);
    expect(subjectMatches('ironclad.events.>', 'ironclad.events')).toBe(false);
    expect(subjectMatches('ironclad.events.*.node.*.*', 'ironclad.events.t.node.1.X')).toBe(true);
    expect(subjectMatches('ironclad.events.*.node.*.*', 'ironclad.events.t.stack.1.X')).toBe(false);
    expect(subjectMatches('a.*', 'a.b.c')).toBe(false);
  });

  it('builds notification filters with wildcards for the parts left out', () => {
    expect(eventFilter()).toBe('ironclad.events.>');
    expect(eventFilter({ tenant: 'acme' })).toBe('ironclad.events.acme.*.*.*');
    expect(eventFilter({ entity_id: 'n1', type: 'TaskFinished' })).toBe('ironclad.events.*.*.n1.TaskFinished');
  });

  it('maps a failed work handler once: permanent errors are terminated, the rest naked with backoff', () => {
    expect(settlementFor(new DriverError('permanent', 'bad password'), 1)).toEqual({ action: 'term', reason: 'bad password' });
    expect(settlementFor(new DriverError('transient', 'BMC unreachable'), 1)).toEqual({ action: 'nak', delayMs: 1000 });
    expect(settlementFor(new Error('boom'), 3)).toEqual({ action: 'nak', delayMs: 4000 });
    expect(settlementFor(new Error('boom'), 30)).toEqual({ action: 'nak', delayMs: 60_000 });
    expect(settlementFor(Object.assign(new Error('no'), { kind: 'validation' }), 1).action).toBe('term');
  });
});
