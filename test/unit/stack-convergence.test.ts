/**
 * Convergence as a property: random templates (references, replacements, failures, holds)
 * applied one after another at random moments, with workers and signals in random orders. The
 * stack must always end converged to the last template, or fully deleted. Seeded, so a failure
 * names the seed that reproduces it (`STACK_FUZZ_SEEDS=n` runs more).
 */
import { describe, expect, it } from 'vitest';
import type { Template } from '../../src/domain/stack/template.js';
import { createSim, expectConverged, tpl, type Sim } from '../support/stack-sim.js';

const NAMES = ['a', 'b', 'c', 'd', 'e', 'f'];
const SEEDS = Number(process.env['STACK_FUZZ_SEEDS'] ?? 60);

/** A random acyclic template (references only point to earlier names). `messy` adds fail_on and hold_on. */
function randomTemplate(random: () => number, messy: boolean): Template {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const chosen = NAMES.filter(() => random() < 0.7);
  const resources: Record<string, Record<string, unknown>> = {};
  chosen.forEach((name, i) => {
    const earlier = chosen.slice(0, i);
    const props: Record<string, unknown> = { value: Math.floor(random() * 3) };
    if (random() < 0.4) props['replace_key'] = Math.floor(random() * 2);
    if (earlier.length > 0 && random() < 0.6) props['value'] = { ref: { get_resource: pick(earlier) }, n: props['value'] };
    if (earlier.length > 0 && random() < 0.3) props['depends_on'] = [pick(earlier)];
    // A failing delete would be retried forever by every later traversal: only create/update fail.
    if (messy && random() < 0.15) props['fail_on'] = [pick(['create', 'update'])];
    if (messy && random() < 0.15) props['hold_on'] = [pick(['create', 'update', 'delete'])];
    resources[name] = props;
  });
  return tpl(resources);
}

const heldRecords = (sim: Sim) => Object.values(sim.state.records).filter((r) => r.action?.hold && r.action.held !== null && r.action.signal === null);

/** Runs workers and releases held actions until nothing moves. */
function settle(sim: Sim): void {
  for (let i = 0; i < 1000; i++) {
    sim.run();
    const held = heldRecords(sim);
    if (held.length === 0) return;
    sim.signal(held[0]!.name);
  }
  throw new Error('did not settle');
}

/** Random work: some worker steps, and now and then a signal (possibly a failing one). */
function churn(sim: Sim): void {
  sim.runSome(Math.floor(sim.random() * 6));
  const held = heldRecords(sim);
  if (held.length > 0 && sim.random() < 0.5) {
    const names = [...new Set(held.map((r) => r.name))];
    sim.signal(names[Math.floor(sim.random() * names.length)]!, sim.random() < 0.2 ? 'fail' : 'complete');
  }
}

describe('convergence under any schedule', () => {
  it.each(Array.from({ length: SEEDS }, (_, i) => i + 1))('a random sequence of requests converges to the last template (seed %i)', (seed) => {
    const sim = createSim({ seed });
    const random = sim.random;
    sim.create(randomTemplate(random, true), { rollback_on_failure: random() < 0.3 });
    const steps = 1 + Math.floor(random() * 4);
    for (let i = 0; i < steps; i++) {
      churn(sim);
      sim.update(randomTemplate(random, true), { rollback_on_failure: random() < 0.3 });
    }
    churn(sim);
    if (random() < 0.3) {
      sim.remove();
      settle(sim);
      expect(sim.state.status, sim.state.status_reason ?? '').toBe('DELETE_COMPLETE');
      expect(sim.world.size).toBe(0);
    } else {
      const last = randomTemplate(random, false);
      sim.update(last, { rollback_on_failure: false });
      settle(sim);
      expectConverged(sim, last, 'UPDATE_COMPLETE');
    }
    expect(sim.replay()).toEqual(sim.state);
  });

  it.each(Array.from({ length: SEEDS }, (_, i) => i + 1))('an update that may fail, with rollback, ends on one template or the other, original ids kept (seed %i)', (seed) => {
    const sim = createSim({ seed });
    const random = sim.random;
    const first = randomTemplate(random, false);
    sim.create(first, { rollback_on_failure: true });
    sim.run();
    const original = Object.fromEntries(Object.keys(first.resources).map((n) => [n, sim.physicalIdOf(n)]));
    const second = randomTemplate(random, true);
    sim.update(second);
    settle(sim);
    if (sim.state.status === 'UPDATE_COMPLETE') expectConverged(sim, second, 'UPDATE_COMPLETE');
    else {
      expectConverged(sim, first, 'ROLLBACK_COMPLETE');
      for (const [name, id] of Object.entries(original)) expect(sim.physicalIdOf(name), name).toBe(id);
    }
  });
});
