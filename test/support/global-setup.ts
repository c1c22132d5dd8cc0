/**
 * Builds dist/ once before the suites that start the real server process (e2e).
 * Unit, contract and api suites run from the TypeScript sources directly.
 */
import { execFileSync } from 'node:child_process';

export default async function setup(): Promise<void> {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}
