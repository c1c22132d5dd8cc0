/**
 * Several real `ironclad serve` processes sharing one fleet, for the cluster e2e: one nats-server
 * (NATS_URL), one shared event store file (IRONCLAD_EVENT_STORE_FILE), one data directory and port
 * per process, the same secret keys everywhere. Start-up is awaited on readiness, nothing sleeps.
 * Also reads what the processes logged (pino JSON lines) and what the shared log holds.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { startServer, tempDir, type ServerProcess } from './server-process.js';

export interface Cluster {
  readonly dir: string;
  readonly storeFile: string;
  readonly members: ServerProcess[];
  /** Every JSON log line of `member` whose `msg` is `msg`. */
  logLines(member: ServerProcess, msg: string): Record<string, any>[];
  /** Every event of the shared log, in log order. */
  events(): { position: number; id: string; stream: string; revision: number; type: string; data: Record<string, any> }[];
  remove(): void;
}

export async function startCluster(opts: { size: number; natsUrl: string; env?: Record<string, string> }): Promise<Cluster> {
  const dir = tempDir('ironclad-cluster-');
  const storeFile = join(dir.path, 'events.db');
  const env = {
    NATS_URL: opts.natsUrl,
    IRONCLAD_EVENT_STORE_FILE: storeFile,
    IRONCLAD_SECRET_KEY: randomBytes(32).toString('hex'),
    IRONCLAD_WEBHOOK_SECRET: randomBytes(16).toString('hex'),
    ...opts.env,
  };
  const members: ServerProcess[] = [];
  try {
    // One after the other: the first creates the streams and the shared file's schema.
    for (let i = 1; i <= opts.size; i++) members.push(await startServer({ dataDir: join(dir.path, `p${i}`), env, readyTimeoutMs: 60_000 }));
  } catch (err) {
    await Promise.all(members.map((m) => m.kill('SIGKILL').catch(() => undefined)));
    dir.remove();
    throw err;
  }
  return {
    dir: dir.path, storeFile, members,
    logLines(member, msg) {
      const out: Record<string, any>[] = [];
      for (const line of member.stdout.join('').split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const o = JSON.parse(line) as Record<string, any>;
          if (o['msg'] === msg) out.push(o);
        } catch {
          // a line cut by SIGKILL
        }
      }
      return out;
    },
    events() {
      const db = new Database(storeFile, { readonly: true, fileMustExist: true });
      try {
        const rows = db.prepare('SELECT position, id, stream, revision, type, data FROM events ORDER BY position').all() as any[];
        return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as Record<string, any> }));
      } finally {
        db.close();
      }
    },
    remove: () => dir.remove(),
  };
}
