/** `ironclad serve`: start, listen, and shut down gracefully on SIGTERM/SIGINT. */
import type { Config } from '../config.js';
import { createIronclad, StartupError } from '../main.js';

/** Returns -1 while serving (the process stays up until a signal), or an exit code on failure. */
export async function serveCommand(config: Config): Promise<number> {
  let ironclad;
  try {
    ironclad = await createIronclad({ config });
  } catch (err) {
    if (err instanceof StartupError) {
      process.stderr.write(`ironclad: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  await ironclad.start();
  const address = await ironclad.listen();
  process.stdout.write(`ironclad listening on ${address} (data: ${config.KURRENTDB_URL ? 'KurrentDB' : config.IRONCLAD_DATA_DIR}, bus: ${config.NATS_URL ? 'NATS' : 'in-process'})\n`);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`ironclad: ${signal} received, shutting down\n`);
    ironclad.close().then(() => process.exit(0), (err: unknown) => {
      process.stderr.write(`ironclad: shutdown failed: ${String(err)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  return -1;
}
