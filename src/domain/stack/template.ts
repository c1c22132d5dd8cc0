/**
 * Stack templates (api.md "Stacks", docs/stacks.md): parsing from a JS object, JSON or YAML,
 * validation, references and the dependency relation.
 *
 * Validation reports **every** problem at once as `validation_failed` with `errors: [{path,
 * message}]` (api.md "Conventions"): the structure (zod, strict objects), unknown types, bad
 * properties, malformed or dangling references, unknown attributes and dependency cycles.
 */
import YAML from 'yaml';
import { z } from 'zod';
import { IroncladError, type FieldError } from '../errors.js';
import { isPlainObject } from './json.js';
import { RESOURCE_TYPE_NAMES, resourceType } from './resource-types.js';

/** One resource as the template defines it (normalised: properties and depends_on always present). */
export interface ResourceDefinition {
  readonly type: string;
  readonly properties: Readonly<Record<string, unknown>>;
  /** Explicit dependencies only; `dependencies()` adds the implicit ones. */
  readonly depends_on: readonly string[];
}

export interface OutputDefinition {
  readonly value: unknown;
  readonly description?: string;
}

/** A validated template. Plain JSON, so it can be stored in events as it is. */
export interface Template {
  readonly resources: Readonly<Record<string, ResourceDefinition>>;
  readonly outputs: Readonly<Record<string, OutputDefinition>>;
}

/** The template of a delete: converging to it removes every resource (docs/stacks.md). */
export const EMPTY_TEMPLATE: Template = Object.freeze({ resources: Object.freeze({}), outputs: Object.freeze({}) });

/** A reference found in a template value. */
export type Reference =
  | { readonly kind: 'get_resource'; readonly target: string }
  | { readonly kind: 'get_attr'; readonly target: string; readonly attribute: string; readonly path: readonly (string | number)[] };

/** A reference with where it was found (path segments relative to the walked value). */
export interface FoundReference {
  readonly at: readonly (string | number)[];
  readonly ref: Reference;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,254}$/;

const resourceShape = z.strictObject({
  type: z.string().min(1),
  properties: z.record(z.string(), z.unknown()).nullable().optional(),
  // Heat accepts a single name as well as a list; so do we.
  depends_on: z.union([z.string(), z.array(z.string())]).optional(),
  description: z.string().optional(),
});
const templateShape = z.strictObject({
  // Accepted so Heat templates paste as they are; ignored otherwise.
  heat_template_version: z.union([z.string(), z.number()]).optional(),
  description: z.string().optional(),
  resources: z.record(z.string(), resourceShape),
  outputs: z.record(z.string(), z.strictObject({ value: z.unknown(), description: z.string().optional() })).nullable().optional(),
});
type TemplateShape = z.infer<typeof templateShape>;

export interface ParseOptions {
  /** Prefix of every error path (default `template`; the HTTP layer may pass `body.template`). */
  readonly path?: string;
}

/**
 * Parses and validates a template given as an object or as JSON / YAML text.
 * @throws IroncladError `validation_failed` listing every problem found, each with its path.
 */
export function parseTemplate(input: unknown, opts: ParseOptions = {}): Template {
  const prefix = opts.path ?? 'template';
  const at = (segments: readonly (string | number)[]): string => [prefix, ...segments].join('.');
  const raw = typeof input === 'string' ? parseText(input, prefix) : input;
  const shaped = templateShape.safeParse(raw);
  if (!shaped.success) throw invalid(zodErrors(shaped.error.issues, [], at));
  const errors: FieldError[] = [];
  const template = normalise(shaped.data);
  for (const [name, def] of Object.entries(template.resources)) checkResource(name, def, template, at, errors);
  for (const [name, out] of Object.entries(template.outputs)) {
    checkReferences(out.value, ['outputs', name, 'value'], template, at, errors);
  }
  // Edges to unknown names are skipped, so a cycle is reported beside every other problem.
  const cycle = findCycle(dependencies(template));
  if (cycle) errors.push({ path: at(['resources', cycle[0]!]), message: `dependency cycle: ${cycle.join(' → ')}` });
  if (errors.length > 0) throw invalid(errors);
  return template;
}

function invalid(errors: FieldError[]): IroncladError {
  const first = errors[0]!;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
  return new IroncladError('validation_failed', `The template is not valid: ${first.path}: ${first.message}${more}.`, { errors });
}

function parseText(text: string, prefix: string): unknown {
  if (text.trim() === '') throw invalid([{ path: prefix, message: 'the template is empty' }]);
  try {
    // YAML 1.2 is a superset of JSON, so one parser serves both; duplicate keys are errors.
    return YAML.parse(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    throw invalid([{ path: prefix, message: `not valid JSON or YAML: ${message}` }]);
  }
}

function zodErrors(issues: readonly z.core.$ZodIssue[], base: readonly (string | number)[], at: (s: readonly (string | number)[]) => string): FieldError[] {
  return issues.flatMap((issue) => {
    const path = [...base, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: at([...path, key]), message: 'unknown field' }));
    }
    return [{ path: at(path), message: issue.message }];
  });
}

function normalise(t: TemplateShape): Template {
  const resources: Record<string, ResourceDefinition> = {};
  for (const [name, r] of Object.entries(t.resources)) {
    const deps = r.depends_on === undefined ? [] : typeof r.depends_on === 'string' ? [r.depends_on] : r.depends_on;
    resources[name] = { type: r.type, properties: r.properties ?? {}, depends_on: [...new Set(deps)] };
  }
  const outputs: Record<string, OutputDefinition> = {};
  for (const [name, o] of Object.entries(t.outputs ?? {})) {
    outputs[name] = o.description === undefined ? { value: o.value } : { value: o.value, description: o.description };
  }
  return { resources, outputs };
}

type At = (segments: readonly (string | number)[]) => string;

function checkResource(name: string, def: ResourceDefinition, template: Template, at: At, errors: FieldError[]): void {
  const base = ['resources', name];
  if (!NAME.test(name)) {
    errors.push({ path: at(base), message: 'a resource name is 1-255 letters, digits, "_", ".", ":" or "-", starting with a letter, digit or "_"' });
  }
  const type = resourceType(def.type);
  if (type === null) {
    errors.push({ path: at([...base, 'type']), message: `unknown resource type "${def.type}"; known types: ${RESOURCE_TYPE_NAMES.join(', ')}` });
  } else {
    const props = type.properties.safeParse(def.properties);
    if (!props.success) errors.push(...zodErrors(props.error.issues, [...base, 'properties'], at));
  }
  def.depends_on.forEach((dep, i) => {
    if (!Object.hasOwn(template.resources, dep)) {
      errors.push({ path: at([...base, 'depends_on', i]), message: `depends on unknown resource "${dep}"` });
    }
  });
  checkReferences(def.properties, [...base, 'properties'], template, at, errors);
}

function checkReferences(value: unknown, base: readonly (string | number)[], template: Template, at: At, errors: FieldError[]): void {
  const found = walkReferences(value, base, (path, message) => errors.push({ path: at(path), message }));
  for (const { at: path, ref } of found) {
    const target = Object.hasOwn(template.resources, ref.target) ? template.resources[ref.target]! : null;
    if (target === null) {
      errors.push({ path: at(path), message: `${ref.kind} refers to unknown resource "${ref.target}"` });
      continue;
    }
    const type = resourceType(target.type);
    if (ref.kind === 'get_attr' && type !== null && !type.attributes.includes(ref.attribute)) {
      errors.push({
        path: at(path),
        message: `resource "${ref.target}" (${target.type}) has no attribute "${ref.attribute}"; it has: ${type.attributes.join(', ')}`,
      });
    }
  }
}

/**
 * Every well-formed reference inside `value`, at any depth (references are not searched inside
 * references). Malformed ones are reported through `onError` (path segments, message).
 */
export function walkReferences(
  value: unknown,
  base: readonly (string | number)[] = [],
  onError: (path: (string | number)[], message: string) => void = () => {},
): FoundReference[] {
  const out: FoundReference[] = [];
  const visit = (v: unknown, path: (string | number)[]): void => {
    if (Array.isArray(v)) {
      v.forEach((item, i) => visit(item, [...path, i]));
      return;
    }
    if (!isPlainObject(v)) return;
    const kind = 'get_resource' in v ? 'get_resource' : 'get_attr' in v ? 'get_attr' : null;
    if (kind === null) {
      for (const [k, item] of Object.entries(v)) visit(item, [...path, k]);
      return;
    }
    const refPath = [...path, kind];
    if (Object.keys(v).length !== 1) return onError(refPath, `a ${kind} reference must be the only key of its object`);
    const ref = referenceOf(kind, v[kind]);
    if (typeof ref === 'string') return onError(refPath, ref);
    out.push({ at: refPath, ref });
  };
  visit(value, [...base]);
  return out;
}

/** The reference, or a message saying what is wrong with its argument. */
function referenceOf(kind: 'get_resource' | 'get_attr', arg: unknown): Reference | string {
  if (kind === 'get_resource') {
    return typeof arg === 'string' && arg !== '' ? { kind, target: arg } : 'get_resource takes a resource name';
  }
  const ok = Array.isArray(arg) && arg.length >= 2 && typeof arg[0] === 'string' && typeof arg[1] === 'string'
    && arg.slice(2).every((p) => typeof p === 'string' || typeof p === 'number');
  if (!ok) return 'get_attr takes [resource name, attribute, ...path]';
  const [target, attribute, ...path] = arg as [string, string, ...(string | number)[]];
  return { kind, target, attribute, path };
}

/**
 * The dependency relation of a template: for each resource, the resources it needs first —
 * its `depends_on` plus every resource its properties reference (`get_resource`, `get_attr`)
 * at any depth. Every resource has an entry (possibly empty); names are in template order.
 */
export function dependencies(template: Template): Map<string, Set<string>> {
  const deps = new Map<string, Set<string>>();
  for (const [name, def] of Object.entries(template.resources)) {
    const set = new Set<string>(def.depends_on);
    for (const { ref } of walkReferences(def.properties)) set.add(ref.target);
    deps.set(name, set);
  }
  return deps;
}

/**
 * A dependency cycle as the names along it, first name repeated at the end (`a → b → a`), or
 * null when the relation is acyclic. Edges to unknown names are ignored (reported elsewhere).
 */
export function findCycle(deps: ReadonlyMap<string, ReadonlySet<string>>): string[] | null {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  // Iterative DFS would be longer; templates are small enough (≤ thousands) for recursion.
  const visit = (name: string): string[] | null => {
    state.set(name, 'visiting');
    stack.push(name);
    for (const next of deps.get(name) ?? []) {
      if (!deps.has(next)) continue;
      const s = state.get(next);
      if (s === 'visiting') return [...stack.slice(stack.indexOf(next)), next];
      if (s === undefined) {
        const cycle = visit(next);
        if (cycle) return cycle;
      }
    }
    stack.pop();
    state.set(name, 'done');
    return null;
  };
  for (const name of deps.keys()) {
    if (state.has(name)) continue;
    const cycle = visit(name);
    if (cycle) return cycle;
  }
  return null;
}
