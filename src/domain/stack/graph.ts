/**
 * The convergence graph of docs/stacks.md, as pure functions over plain data.
 *
 * A traversal converges the stack's resource records to one template. Its graph has a node
 * `(record_id, phase)` per step: an `update` node for the record chosen for each resource of the
 * template, and a `cleanup` node for every record that exists when the traversal starts.
 *
 * Ordering, and why:
 * - update(X) after update(Y) when X depends on Y in the template (Y's outputs are X's inputs);
 * - cleanup(R) after update(R): a record is cleaned up only after its own update;
 * - cleanup(R) after cleanup(Q) for every record Q built against R (Q.requires ∋ R): reverse
 *   dependency order, so nothing is deleted while something still points at it;
 * - cleanup(old) after cleanup(replacement) (Heat's rule for replaced records);
 * - and every cleanup node after **every** update node of the traversal. Heat convergence lets a
 *   replaced record be deleted as soon as its own dependents moved; then a failure elsewhere in
 *   the same traversal leaves nothing for the rollback to re-adopt, depending on worker timing.
 *   Deleting only once the whole update phase succeeded makes "rollback restores the original
 *   physical ids" hold under any scheduling, at the price of keeping old records a little longer.
 */
import { resourceType, type ResourceAction } from './resource-types.js';
import { isPlainObject, jsonEqual } from './json.js';
import { dependencies, type ResourceDefinition, type Template } from './template.js';

/** A graph node's phase: build the record from the template, or clean it up once unneeded. */
export type Phase = 'update' | 'cleanup';

/** A resource record's status (docs/stacks.md "Resource states"). */
export type ResourceStatus = 'INIT_COMPLETE' | `${ResourceAction}_${'IN_PROGRESS' | 'COMPLETE' | 'FAILED'}`;

export interface GraphNode {
  /** `nodeKey(record_id, phase)`. */
  readonly key: string;
  readonly record_id: string;
  readonly phase: Phase;
  /** The resource name of the record (for messages and inputs). */
  readonly name: string;
  /** Keys of the nodes that must report before this one is ready. */
  readonly requires: readonly string[];
}

/** A traversal's graph. Plain JSON: it is recorded in `TraversalStarted`. */
export interface Graph {
  readonly nodes: Readonly<Record<string, GraphNode>>;
}

/** What the graph needs to know about an existing record. */
export interface GraphRecord {
  readonly record_id: string;
  readonly name: string;
  readonly type: string;
  /** The template its current definition came from. */
  readonly template_id: string | null;
  readonly status: ResourceStatus;
  /** Record ids it was built against (its inputs then). */
  readonly requires: readonly string[];
  readonly replaces: string | null;
  /** Creation order within the stack (newer is larger). */
  readonly seq: number;
  /** The definition it was last built from (null when never built). */
  readonly definition?: ResourceDefinition | null;
}

/** A record the traversal creates for a resource that has none yet. */
export interface NewRecord {
  readonly record_id: string;
  readonly name: string;
  readonly type: string;
}

export interface GraphInput {
  readonly template: Template;
  readonly template_id: string;
  /** The template the stack was converging to before this traversal (second choice of record). */
  readonly previous_template_id: string | null;
  readonly records: readonly GraphRecord[];
  readonly newId: () => string;
}

export interface GraphPlan {
  readonly graph: Graph;
  /** Resource name → the record its update node acts on. */
  readonly chosen: Readonly<Record<string, string>>;
  readonly new_records: readonly NewRecord[];
}

/** What a reported node passes to its successors. */
export interface NodeOutput {
  readonly record_id: string;
  readonly physical_id: string | null;
  readonly attributes: Readonly<Record<string, unknown>>;
}

/** The key of a graph node. */
export const nodeKey = (recordId: string, phase: Phase): string => `${recordId}:${phase}`;

const isFailed = (s: ResourceStatus): boolean => s.endsWith('_FAILED');

/**
 * The best existing record for a resource (docs/stacks.md): never a deleted one or one being
 * deleted; not a failed one if another exists; then one built with the target template (this is
 * what makes a rollback re-adopt the original physical resources) — or built from the very same
 * definition, so that re-submitting an old template by hand re-adopts too — then the previous
 * template; then the newest. Null when no record qualifies (the traversal creates one).
 */
export function chooseRecord<R extends GraphRecord>(
  candidates: readonly R[], targetTemplateId: string, previousTemplateId: string | null, targetDefinition?: ResourceDefinition,
): R | null {
  const usable = candidates.filter((r) => r.status !== 'DELETE_COMPLETE' && r.status !== 'DELETE_IN_PROGRESS');
  const isTarget = (r: R): boolean =>
    r.template_id === targetTemplateId || (targetDefinition !== undefined && r.definition != null && r.status !== 'INIT_COMPLETE' && jsonEqual(r.definition, targetDefinition));
  const rank = (r: R): [number, number, number] => [
    isFailed(r.status) ? 1 : 0,
    isTarget(r) ? 0 : r.template_id !== null && r.template_id === previousTemplateId ? 1 : 2,
    -r.seq,
  ];
  let best: R | null = null;
  let bestRank: [number, number, number] | null = null;
  for (const r of usable) {
    const k = rank(r);
    if (bestRank === null || k[0] < bestRank[0] || (k[0] === bestRank[0] && (k[1] < bestRank[1] || (k[1] === bestRank[1] && k[2] < bestRank[2])))) {
      best = r;
      bestRank = k;
    }
  }
  return best;
}

/**
 * Builds a traversal's graph from the target template and the stack's existing records.
 * Delete is the empty template: only cleanup nodes. Create has no records: only update nodes.
 */
export function buildGraph(input: GraphInput): GraphPlan {
  const live = input.records.filter((r) => r.status !== 'DELETE_COMPLETE');
  const chosen: Record<string, string> = {};
  const newRecords: NewRecord[] = [];
  for (const [name, def] of Object.entries(input.template.resources)) {
    const best = chooseRecord(live.filter((r) => r.name === name), input.template_id, input.previous_template_id, def);
    if (best) chosen[name] = best.record_id;
    else {
      const record = { record_id: input.newId(), name, type: def.type };
      newRecords.push(record);
      chosen[name] = record.record_id;
    }
  }
  const nodes: Record<string, GraphNode> = {};
  for (const [name, deps] of dependencies(input.template)) {
    const id = chosen[name]!;
    nodes[nodeKey(id, 'update')] = { key: nodeKey(id, 'update'), record_id: id, phase: 'update', name, requires: [...deps].map((d) => nodeKey(chosen[d]!, 'update')) };
  }
  const liveIds = new Set(live.map((r) => r.record_id));
  for (const r of live) {
    const requires = new Set<string>();
    if (nodes[nodeKey(r.record_id, 'update')]) requires.add(nodeKey(r.record_id, 'update'));
    for (const q of live) {
      if (q.record_id === r.record_id) continue;
      if (q.requires.includes(r.record_id)) requires.add(nodeKey(q.record_id, 'cleanup'));
      if (q.replaces === r.record_id && liveIds.has(q.record_id)) requires.add(nodeKey(q.record_id, 'cleanup'));
    }
    const key = nodeKey(r.record_id, 'cleanup');
    nodes[key] = { key, record_id: r.record_id, phase: 'cleanup', name: r.name, requires: [...requires] };
  }
  return { graph: { nodes: breakCleanupCycles(nodes) }, chosen, new_records: newRecords };
}

/**
 * Records built under different templates can, in principle, require each other (Heat hit such
 * deadlocks). Update edges come from one acyclic template, so any cycle is among cleanup nodes:
 * drop the cleanup→cleanup edges between the nodes Kahn's algorithm could not order.
 */
function breakCleanupCycles(nodes: Record<string, GraphNode>): Record<string, GraphNode> {
  const stuck = unordered(nodes);
  if (stuck.size === 0) return nodes;
  const out: Record<string, GraphNode> = {};
  for (const [key, n] of Object.entries(nodes)) {
    out[key] = n.phase === 'cleanup' && stuck.has(key)
      ? { ...n, requires: n.requires.filter((k) => !(stuck.has(k) && nodes[k]!.phase === 'cleanup')) }
      : n;
  }
  return out;
}

/** The keys Kahn's algorithm cannot order (empty for an acyclic graph). */
function unordered(nodes: Readonly<Record<string, GraphNode>>): Set<string> {
  const pending = new Map(Object.values(nodes).map((n) => [n.key, n.requires.filter((k) => k in nodes).length]));
  const successors = new Map<string, string[]>();
  for (const n of Object.values(nodes)) for (const k of n.requires) if (k in nodes) successors.set(k, [...(successors.get(k) ?? []), n.key]);
  const queue = [...pending].filter(([, c]) => c === 0).map(([k]) => k);
  while (queue.length > 0) {
    const k = queue.pop()!;
    pending.delete(k);
    for (const s of successors.get(k) ?? []) {
      const c = pending.get(s)! - 1;
      pending.set(s, c);
      if (c === 0) queue.push(s);
    }
  }
  return new Set(pending.keys());
}

/** True when the key has reported (`done` maps reported keys to anything but undefined). */
const reported = (done: Readonly<Record<string, unknown>>, key: string): boolean => done[key] !== undefined;

/**
 * The nodes that have not reported and whose predecessors all have (cleanup nodes also wait
 * for every update node — see the module comment). In graph order; callers skip nodes already
 * started or whose record is busy with another action.
 */
export function ready(graph: Graph, done: Readonly<Record<string, unknown>>): GraphNode[] {
  const nodes = Object.values(graph.nodes);
  const updatesDone = nodes.every((n) => n.phase !== 'update' || reported(done, n.key));
  return nodes.filter((n) => !reported(done, n.key) && (n.phase === 'update' || updatesDone) && n.requires.every((k) => reported(done, k)));
}

/** True when every node of the graph has reported. */
export function isComplete(graph: Graph, done: Readonly<Record<string, unknown>>): boolean {
  return Object.keys(graph.nodes).every((k) => reported(done, k));
}

/** The update node acting for each resource name of the graph (name → node key). */
export function updateNodesByName(graph: Graph): Map<string, string> {
  const out = new Map<string, string>();
  for (const n of Object.values(graph.nodes)) if (n.phase === 'update') out.set(n.name, n.key);
  return out;
}

/**
 * A node's inputs: the outputs of its update predecessors, by resource name. `outputOf` gives a
 * reported node's output (null if it has none yet).
 */
export function inputsOf(graph: Graph, key: string, outputOf: (key: string) => NodeOutput | null): Record<string, NodeOutput> {
  const inputs: Record<string, NodeOutput> = {};
  for (const k of graph.nodes[key]?.requires ?? []) {
    const pred = graph.nodes[k];
    const out = pred && pred.phase === 'update' ? outputOf(k) : null;
    if (pred && out) inputs[pred.name] = out;
  }
  return inputs;
}

/**
 * Replaces every reference in `value`, at any depth, with what it denotes: `get_resource` →
 * the physical id, `get_attr` → the attribute (then its path). Unknown names or attributes
 * resolve to null, as in Heat. The input is not modified.
 */
export function resolveReferences(value: unknown, outputs: Readonly<Record<string, NodeOutput>>): unknown {
  if (Array.isArray(value)) return value.map((v) => resolveReferences(v, outputs));
  if (!isPlainObject(value)) return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0] === 'get_resource' && typeof value['get_resource'] === 'string') {
    return outputs[value['get_resource']]?.physical_id ?? null;
  }
  if (keys.length === 1 && keys[0] === 'get_attr' && Array.isArray(value['get_attr'])) {
    const [name, attribute, ...path] = value['get_attr'] as unknown[];
    let v: unknown = outputs[String(name)]?.attributes[String(attribute)];
    for (const p of path) v = Array.isArray(v) || isPlainObject(v) ? (v as Record<string, unknown>)[String(p)] : undefined;
    return v ?? null;
  }
  return Object.fromEntries(keys.map((k) => [k, resolveReferences(value[k], outputs)]));
}

/** What an update node does to its record. */
export type UpdatePlan = 'noop' | 'create' | 'update' | 'replace';

/** The record as the update decision needs it. */
export interface PlannedRecord {
  readonly type: string;
  readonly status: ResourceStatus;
  /** The resolved properties it was last built (or attempted) with; null when never built. */
  readonly properties: Readonly<Record<string, unknown>> | null;
}

/**
 * Decides an update node once its inputs are known (so a dependency's new physical id counts
 * as a change). The record must have no action in flight.
 * - never built → create (a record an old traversal never built is built from the new definition);
 * - another type, or a failed create/delete → replace (Heat replaces failed resources);
 * - unchanged and healthy → noop; otherwise in place unless the type's rule forces a replacement.
 */
export function planUpdate(record: PlannedRecord, definition: ResourceDefinition, resolved: Record<string, unknown>): UpdatePlan {
  if (record.status === 'INIT_COMPLETE') return 'create';
  const type = resourceType(definition.type);
  if (record.type !== definition.type || type === null) return 'replace';
  if (record.status === 'CREATE_FAILED' || record.status.startsWith('DELETE_')) return 'replace';
  const before = record.properties ?? {};
  const changed = !jsonEqual(before, resolved);
  if (changed && type.needsReplacement(before, resolved)) return 'replace';
  // A failed update is tried again even without a change: the resource may be half-updated.
  if (record.status === 'UPDATE_FAILED') return 'update';
  return changed ? 'update' : 'noop';
}

/** Why a cleanup node needs no action. */
export type CleanupSkip = 'current' | 'never_built' | 'already_deleted';

/**
 * Decides a cleanup node: a record the traversal kept (`isCurrent`) is left alone; a record
 * never built is discarded; one already deleted needs nothing; anything else is deleted.
 */
export function planCleanup(record: { readonly status: ResourceStatus }, isCurrent: boolean): CleanupSkip | 'delete' {
  if (isCurrent) return 'current';
  if (record.status === 'DELETE_COMPLETE') return 'already_deleted';
  if (record.status === 'INIT_COMPLETE') return 'never_built';
  return 'delete';
}
