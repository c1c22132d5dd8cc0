/** Validation shared by the snapshot store adapters, so they reject exactly the same inputs. */

/** Serializes a snapshot after checking its revision; throws TypeError on bad input. */
export function serializeSnapshot(stream: string, revision: number, state: unknown): string {
  if (!Number.isInteger(revision) || revision < 0) {
    throw new TypeError(`Snapshot of ${stream}: revision must be a non-negative integer, got ${String(revision)}`);
  }
  // JSON.stringify returns undefined for undefined/functions/symbols: nothing could be restored.
  const json = JSON.stringify(state) as string | undefined;
  if (json === undefined) throw new TypeError(`Snapshot of ${stream}: state is not JSON-serializable`);
  return json;
}
