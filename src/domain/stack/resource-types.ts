/**
 * The resource types a template may use (docs/stacks.md "Resource types"): their property
 * schemas, their attributes and the rules that say whether a change is done in place or needs
 * a replacement. This is the one registry: template validation, the convergence engine and the
 * work plane all ask it, so a type cannot be valid in one place and unknown in another.
 */
import { z } from 'zod';
import { isPlainObject, jsonEqual } from './json.js';

export const TEST_RESOURCE = 'ironclad::test::resource';
export const BAREMETAL_SERVER = 'ironclad::baremetal::server';

/** The resource actions of docs/stacks.md, upper case as they appear in statuses. */
export const RESOURCE_ACTIONS = ['CREATE', 'UPDATE', 'DELETE'] as const;
export type ResourceAction = (typeof RESOURCE_ACTIONS)[number];

/** A property value that is a reference; its own shape is checked by the template walker. */
const referenceLike = z.custom<Record<string, unknown>>(
  (v) => isPlainObject(v) && ('get_resource' in v || 'get_attr' in v),
  { message: 'expected a value or a get_resource / get_attr reference' },
);
/** Any scalar property may be given literally or by reference (resolved before the action). */
const orRef = <T extends z.ZodType>(schema: T) => z.union([schema, referenceLike]);

const actionNames = z.array(z.enum(['create', 'update', 'delete']));
const delayMs = orRef(z.int().min(0).max(86_400_000)).optional();

const testResourceProperties = z.strictObject({
  /** Any JSON; updated in place; exposed as the `output` attribute. */
  value: z.unknown().optional(),
  /** Any JSON; a change forces replacement. */
  replace_key: z.unknown().optional(),
  /** When true, any change forces replacement. */
  update_replace: z.boolean().optional(),
  create_delay_ms: delayMs,
  update_delay_ms: delayMs,
  delete_delay_ms: delayMs,
  /** Plain lists, not references: they decide what the engine and the worker do, before any input is known. */
  fail_on: actionNames.optional(),
  hold_on: actionNames.optional(),
});

const baremetalServerProperties = z.strictObject({
  resource_class: orRef(z.string().min(1)),
  traits: z.array(orRef(z.string().min(1))).optional(),
  max_attempts: z.int().min(1).max(100).optional(),
});

/** What the engine needs to know about one resource type. */
export interface ResourceTypeInfo {
  readonly name: string;
  /** The strict zod schema of its `properties` (unknown keys are errors). */
  readonly properties: z.ZodType<Record<string, unknown>>;
  /** The attributes `get_attr` may read. */
  readonly attributes: readonly string[];
  /** Given a change (before ≠ after, both resolved), true when it cannot be done in place. */
  needsReplacement(before: Record<string, unknown>, after: Record<string, unknown>): boolean;
}

function traitSet(v: unknown): string[] {
  return Array.isArray(v) ? [...new Set(v.map(String))].sort() : [];
}

/** The registry, keyed by type name. Frozen: types are code, not data. */
export const RESOURCE_TYPES: Readonly<Record<string, ResourceTypeInfo>> = Object.freeze({
  [TEST_RESOURCE]: {
    name: TEST_RESOURCE,
    properties: testResourceProperties,
    attributes: ['output'],
    needsReplacement: (before, after) => after['update_replace'] === true || !jsonEqual(before['replace_key'], after['replace_key']),
  },
  [BAREMETAL_SERVER]: {
    name: BAREMETAL_SERVER,
    properties: baremetalServerProperties,
    attributes: ['node_id', 'node_name'],
    // A server cannot move to another class or trait set in place: that is another machine.
    needsReplacement: (before, after) =>
      before['resource_class'] !== after['resource_class'] || !jsonEqual(traitSet(before['traits']), traitSet(after['traits'])),
  },
});

/** The known type names, sorted (for error messages). */
export const RESOURCE_TYPE_NAMES: readonly string[] = Object.freeze(Object.keys(RESOURCE_TYPES).sort());

/** The registry entry of `type`, or null when the type is unknown. */
export function resourceType(type: string): ResourceTypeInfo | null {
  return Object.hasOwn(RESOURCE_TYPES, type) ? RESOURCE_TYPES[type]! : null;
}

/**
 * True when an action of a resource with these (resolved) properties stays IN_PROGRESS until a
 * signal arrives (`hold_on` of the test resource). A delete uses the record's own properties.
 */
export function holdsOn(type: string, properties: Record<string, unknown> | null, action: ResourceAction): boolean {
  if (type !== TEST_RESOURCE || properties === null) return false;
  const hold = properties['hold_on'];
  return Array.isArray(hold) && hold.includes(action.toLowerCase());
}
