/** `ironclad replay node|stack <id>`: read the stream from the store and fold it; nothing else starts. */
import { join } from 'node:path';
import type { Config } from '../config.js';
import { createKurrentEventStore } from '../adapters/kurrentdb/event-store.js';
import { openSqlite } from '../adapters/sqlite/open.js';
import { createSqliteEventStore } from '../adapters/sqlite/event-store.js';
import { nodeView } from '../app/nodes/node-view.js';
import { eventEnvelope, replayNode } from '../app/nodes/replay.js';
import { replayStack } from '../app/stacks/replay.js';
import { stackView } from '../domain/stack/view.js';
import type { EventStore } from '../ports/event-store.js';

export async function replayCommand(
  config: Config, id: string, until: number | undefined, json: boolean, out: (s: string) => void, kind: 'node' | 'stack' = 'node',
): Promise<number> {
  const db = config.KURRENTDB_URL ? null : openSqlite(join(config.IRONCLAD_DATA_DIR, 'ironclad.db'));
  const store = config.KURRENTDB_URL ? createKurrentEventStore(config.KURRENTDB_URL) : createSqliteEventStore(db!, { pollIntervalMs: 0 });
  let count = 0;
  try {
    if (kind === 'stack') count = await replayStackSteps(store, id, until, json, out);
    else for await (const step of replayNode(store, id, until)) {
      count++;
      const event = eventEnvelope(step.event);
      const state = nodeView(step.state);
      if (json) out(`${JSON.stringify({ revision: event.revision, event, state })}\n`);
      else out(formatStep(event, state));
    }
  } finally {
    await store.close();
    db?.close();
  }
  if (count === 0) {
    process.stderr.write(`no events for ${kind} ${id}\n`);
    return 1;
  }
  return 0;
}

function formatStep(e: ReturnType<typeof eventEnvelope>, s: ReturnType<typeof nodeView>): string {
  const target = s.target_provision_state ? ` → ${s.target_provision_state}` : '';
  return `#${e.revision} ${e.time} ${e.type} ${JSON.stringify(e.data)}\n` +
    `    state: ${s.provision_state}${target} power=${s.power_state ?? 'null'} maintenance=${s.maintenance}` +
    `${s.current_task ? ` task=${s.current_task.id}(${s.current_task.action})` : ''}${s.queued_tasks.length ? ` queued=${s.queued_tasks.length}` : ''}` +
    `${s.last_error ? ` last_error=${JSON.stringify(s.last_error)}` : ''}\n`;
}

async function replayStackSteps(store: EventStore, id: string, until: number | undefined, json: boolean, out: (s: string) => void): Promise<number> {
  let count = 0;
  for await (const step of replayStack(store, id, until)) {
    count++;
    const event = eventEnvelope(step.event);
    const s = stackView(step.state);
    if (json) out(`${JSON.stringify({ revision: event.revision, event, state: s })}\n`);
    else {
      const busy = s.resources.filter((r) => r.status.endsWith('_IN_PROGRESS')).map((r) => `${r.name}:${r.status}`);
      out(`#${event.revision} ${event.time} ${event.type} ${JSON.stringify(event.data)}\n`
        + `    status: ${s.status}${s.status_reason ? ` (${s.status_reason})` : ''} resources=${s.resources.length}${busy.length ? ` in_progress=${busy.join(',')}` : ''}\n`);
    }
  }
  return count;
}
