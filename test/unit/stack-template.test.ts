/**
 * Stack templates: JSON, YAML and objects; every 400 names what is wrong (api.md "Stacks");
 * references add implicit dependencies at any depth.
 */
import { describe, expect, it } from 'vitest';
import { IroncladError } from '../../src/domain/errors.js';
import { dependencies, EMPTY_TEMPLATE, findCycle, parseTemplate, walkReferences } from '../../src/domain/stack/template.js';

const TEST = 'ironclad::test::resource';
const SERVER = 'ironclad::baremetal::server';

/** The `errors` of the validation_failed the template is refused with. */
function refusal(input: unknown): { path: string; message: string }[] {
  try {
    parseTemplate(input);
  } catch (err) {
    expect(err).toBeInstanceOf(IroncladError);
    expect((err as IroncladError).code).toBe('validation_failed');
    return (err as IroncladError).extensions['errors'] as { path: string; message: string }[];
  }
  throw new Error('the template was accepted');
}

const deps = (input: unknown): Record<string, string[]> =>
  Object.fromEntries([...dependencies(parseTemplate(input))].map(([k, v]) => [k, [...v].sort()]));

describe('parsing', () => {
  const object = {
    resources: {
      db: { type: TEST, properties: { value: 'db' } },
      app: { type: TEST, properties: { value: { get_attr: ['db', 'output'] } }, depends_on: ['db'] },
    },
    outputs: { url: { value: { get_resource: 'app' } } },
  };

  it('accepts an object and normalises absent parts', () => {
    const t = parseTemplate({ resources: { a: { type: TEST } } });
    expect(t).toEqual({ resources: { a: { type: TEST, properties: {}, depends_on: [] } }, outputs: {} });
  });

  it('accepts the same template as JSON text and as YAML text', () => {
    const yaml = `
heat_template_version: 2018-08-31
description: two tiers
resources:
  db:
    type: ${TEST}
    properties:
      value: db
  app:
    type: ${TEST}
    depends_on: db
    properties:
      value: {get_attr: [db, output]}
outputs:
  url:
    value: {get_resource: app}
`;
    const fromObject = parseTemplate(object);
    expect(parseTemplate(JSON.stringify(object))).toEqual(fromObject);
    expect(parseTemplate(yaml)).toEqual(fromObject);
  });

  it('accepts a bare-metal server with its properties', () => {
    const t = parseTemplate({ resources: { s: { type: SERVER, properties: { resource_class: 'gpu', traits: ['CUSTOM_A'], max_attempts: 2 } } } });
    expect(t.resources['s']!.properties).toEqual({ resource_class: 'gpu', traits: ['CUSTOM_A'], max_attempts: 2 });
  });

  it('accepts an empty set of resources (the template of a delete)', () => {
    expect(parseTemplate({ resources: {} })).toEqual(EMPTY_TEMPLATE);
  });

  it('uses the path prefix it is given', () => {
    expect(() => parseTemplate({ resources: { a: { type: 'nope' } } }, { path: 'body.template' })).toThrow(/body\.template\.resources\.a\.type/);
  });
});

describe('refusals name what is wrong', () => {
  it('text that is neither JSON nor YAML', () => {
    expect(refusal('resources: [')).toEqual([{ path: 'template', message: expect.stringMatching(/^not valid JSON or YAML/) }]);
  });

  it('an empty text', () => {
    expect(refusal('  ')).toEqual([{ path: 'template', message: 'the template is empty' }]);
  });

  it('duplicate keys in YAML', () => {
    expect(refusal(`resources:\n  a: {type: ${TEST}}\n  a: {type: ${TEST}}\n`)[0]!.message).toMatch(/unique/);
  });

  it('a template that is not an object, or has no resources', () => {
    expect(refusal(42)).toEqual([{ path: 'template', message: expect.stringContaining('expected object') }]);
    expect(refusal({ outputs: {} })).toEqual([{ path: 'template.resources', message: expect.any(String) }]);
  });

  it('unknown fields, at the top and in a resource', () => {
    expect(refusal({ resources: { a: { type: TEST, propertys: {} } }, parameters: {} })).toEqual([
      { path: 'template.resources.a.propertys', message: 'unknown field' },
      { path: 'template.parameters', message: 'unknown field' },
    ]);
  });

  it('an unknown resource type, listing the known ones', () => {
    expect(refusal({ resources: { a: { type: 'OS::Nova::Server' } } })).toEqual([
      { path: 'template.resources.a.type', message: `unknown resource type "OS::Nova::Server"; known types: ${SERVER}, ${TEST}` },
    ]);
  });

  it('a bad property: unknown, wrong type, out of range, bad enum', () => {
    const errors = refusal({
      resources: {
        a: { type: TEST, properties: { colour: 'red', create_delay_ms: -1, fail_on: ['explode'], update_replace: 'yes' } },
        s: { type: SERVER, properties: { traits: 'GPU' } },
      },
    });
    expect(errors.map((e) => e.path).sort()).toEqual([
      'template.resources.a.properties.colour',
      'template.resources.a.properties.create_delay_ms',
      'template.resources.a.properties.fail_on.0',
      'template.resources.a.properties.update_replace',
      'template.resources.s.properties.resource_class',
      'template.resources.s.properties.traits',
    ]);
  });

  it('a dangling depends_on', () => {
    expect(refusal({ resources: { a: { type: TEST, depends_on: ['ghost'] } } })).toEqual([
      { path: 'template.resources.a.depends_on.0', message: 'depends on unknown resource "ghost"' },
    ]);
  });

  it('a dangling reference, with the path to it at any depth', () => {
    expect(refusal({ resources: { a: { type: TEST, properties: { value: { deep: [1, { x: { get_resource: 'ghost' } }] } } } } })).toEqual([
      { path: 'template.resources.a.properties.value.deep.1.x.get_resource', message: 'get_resource refers to unknown resource "ghost"' },
    ]);
  });

  it('a dangling reference in an output', () => {
    expect(refusal({ resources: {}, outputs: { o: { value: { get_attr: ['ghost', 'output'] } } } })).toEqual([
      { path: 'template.outputs.o.value.get_attr', message: 'get_attr refers to unknown resource "ghost"' },
    ]);
  });

  it('an attribute the type does not have', () => {
    expect(refusal({ resources: { a: { type: TEST }, b: { type: TEST, properties: { value: { get_attr: ['a', 'ip'] } } } } })).toEqual([
      { path: 'template.resources.b.properties.value.get_attr', message: `resource "a" (${TEST}) has no attribute "ip"; it has: output` },
    ]);
  });

  it('malformed references', () => {
    const errors = refusal({
      resources: {
        a: { type: TEST },
        b: { type: TEST, properties: { value: [{ get_attr: 'a.output' }, { get_resource: 'a', extra: 1 }, { get_resource: 7 }] } },
      },
    });
    expect(errors).toEqual([
      { path: 'template.resources.b.properties.value.0.get_attr', message: 'get_attr takes [resource name, attribute, ...path]' },
      { path: 'template.resources.b.properties.value.1.get_resource', message: 'a get_resource reference must be the only key of its object' },
      { path: 'template.resources.b.properties.value.2.get_resource', message: 'get_resource takes a resource name' },
    ]);
  });

  it('a dependency cycle, naming the resources along it', () => {
    const errors = refusal({
      resources: {
        a: { type: TEST, depends_on: ['c'] },
        b: { type: TEST, properties: { value: { get_resource: 'a' } } },
        c: { type: TEST, properties: { value: { nested: { get_attr: ['b', 'output'] } } } },
      },
    });
    expect(errors).toEqual([{ path: 'template.resources.a', message: 'dependency cycle: a → c → b → a' }]);
  });

  it('a resource that depends on itself', () => {
    expect(refusal({ resources: { a: { type: TEST, properties: { value: { get_resource: 'a' } } } } })).toEqual([
      { path: 'template.resources.a', message: 'dependency cycle: a → a' },
    ]);
  });

  it('a bad resource name', () => {
    expect(refusal({ resources: { 'a/b': { type: TEST } } })[0]!.path).toBe('template.resources.a/b');
  });

  it('lists every problem at once, and names the first in the detail', () => {
    let err: IroncladError | null = null;
    try {
      parseTemplate({ resources: { a: { type: 'x' }, b: { type: TEST, depends_on: ['ghost'] } } });
    } catch (e) {
      err = e as IroncladError;
    }
    expect((err!.extensions['errors'] as unknown[]).length).toBe(2);
    expect(err!.message).toMatch(/template\.resources\.a\.type.*\(and 1 more\)/);
  });
});

describe('dependencies', () => {
  it('adds references at any depth to depends_on', () => {
    expect(deps({
      resources: {
        a: { type: TEST },
        b: { type: TEST },
        c: { type: TEST, depends_on: 'a', properties: { value: { list: [{ map: { get_attr: ['b', 'output', 'x', 0] } }] } } },
        d: { type: TEST, properties: { replace_key: { get_resource: 'c' } } },
      },
    })).toEqual({ a: [], b: [], c: ['a', 'b'], d: ['c'] });
  });

  it('does not count outputs as dependencies', () => {
    expect(deps({ resources: { a: { type: TEST } }, outputs: { o: { value: { get_resource: 'a' } } } })).toEqual({ a: [] });
  });

  it('finds references with their paths', () => {
    expect(walkReferences({ x: [{ get_attr: ['a', 'output', 'k'] }] })).toEqual([
      { at: ['x', 0, 'get_attr'], ref: { kind: 'get_attr', target: 'a', attribute: 'output', path: ['k'] } },
    ]);
  });

  it('findCycle is null for an acyclic relation and ignores unknown names', () => {
    expect(findCycle(new Map([['a', new Set(['b'])], ['b', new Set(['zzz'])]]))).toBeNull();
  });
});
