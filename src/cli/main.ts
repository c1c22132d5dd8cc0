#!/usr/bin/env node
/**
 * The `ironclad` command: `serve` (the service), `replay node <id> [--until <revision>]`
 * (fold a stream through the machine and print every step; no effects run).
 */
import { parseArgs } from 'node:util';
import { ConfigError, parseConfig } from '../config.js';
import { demoCommand } from './demo.js';
import { replayCommand } from './replay.js';
import { serveCommand } from './serve.js';
import { runTail, TAIL_USAGE } from './tail.js';

const USAGE = `usage:
  ironclad serve                                  start the service (configured by environment variables)
  ironclad replay node|stack <id> [--until <revision>] [--json]
                                                  print each event of a node and the state after it
  ironclad demo --ipmi <N> [--port <P>]           N simulated BMCs (ipmi_sim) and an Ironclad managing them
${TAIL_USAGE}`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    const config = parseConfig(process.env);
    switch (cmd) {
      case 'serve':
        return await serveCommand(config);
      case 'demo':
        return await demoCommand(rest, process.env, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
      case 'tail':
        return await runTail(rest, config);
      case 'replay': {
        const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, options: { until: { type: 'string' }, json: { type: 'boolean' } } });
        const kind = positionals[0];
        if ((kind !== 'node' && kind !== 'stack') || !positionals[1]) {
          process.stderr.write(`${USAGE}\n`);
          return 2;
        }
        const until = values.until === undefined ? undefined : Number(values.until);
        if (until !== undefined && (!Number.isInteger(until) || until < 0)) {
          process.stderr.write('--until must be a revision (a non-negative integer)\n');
          return 2;
        }
        return await replayCommand(config, positionals[1], until, values.json ?? false, (s) => process.stdout.write(s), kind);
      }
      default:
        process.stderr.write(`${USAGE}\n`);
        return cmd === undefined || cmd === 'help' || cmd === '--help' ? 0 : 2;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
}

// `ironclad replay ... | head` closes the pipe early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== -1) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`ironclad: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
