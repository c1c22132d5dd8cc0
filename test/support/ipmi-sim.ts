/**
 * The simulated-BMC fixture for tests. The code lives in src/adapters/drivers/ipmi-sim.ts (the
 * `ironclad demo` command starts the same BMCs), so there is one copy.
 */
export { hasIpmiSim, startBmcs } from '../../src/adapters/drivers/ipmi-sim.js';
export type { SimBmc, StartBmcsOptions } from '../../src/adapters/drivers/ipmi-sim.js';
