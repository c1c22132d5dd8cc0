/**
 * deploy/ cannot be run here (no Docker, no Kubernetes), so these checks catch what can be caught
 * without them: every file parses, the topology is the documented one, the configuration keys are
 * ones Ironclad accepts, and the JetStream definitions the code loads are exactly the shipped files.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { NATS_DEFINITIONS } from '../../src/adapters/nats/definitions.js';
import { parseConfig } from '../../src/config.js';
import { SUBJECT_ROOT } from '../../src/ports/bus.js';
import { REPO_ROOT } from '../support/server-process.js';

const DEPLOY = join(REPO_ROOT, 'deploy');
const read = (...p: string[]): string => readFileSync(join(DEPLOY, ...p), 'utf8');
const KEY = 'ab'.repeat(32);

type Doc = { kind: string; metadata: { name: string }; spec?: any; data?: Record<string, string>; stringData?: Record<string, string> };

function k8sDocs(): Doc[] {
  const docs: Doc[] = [];
  for (const f of readdirSync(join(DEPLOY, 'k8s')).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml')) {
    for (const d of parseAllDocuments(read('k8s', f))) {
      expect(d.errors, `${f}: ${d.errors.map((e) => e.message).join('; ')}`).toEqual([]);
      docs.push(d.toJS() as Doc);
    }
  }
  return docs;
}

const hostsOf = (urls: string): string[] => urls.split(',').map((u) => new URL(u.trim()).hostname);

describe('deploy/compose.yaml', () => {
  const compose = parse(read('compose.yaml'), { merge: true }) as { services: Record<string, any> };
  const services = compose.services;

  it('runs a 3-node NATS cluster with JetStream, one KurrentDB and 3 Ironclad processes', () => {
    const nats = ['nats-1', 'nats-2', 'nats-3'];
    for (const n of nats) {
      const args: string[] = services[n].command;
      expect(args).toContain('--js');
      expect(args[args.indexOf('--server_name') + 1]).toBe(n);
      expect(args[args.indexOf('--cluster_name') + 1]).toBe('ironclad');
      expect(hostsOf(args[args.indexOf('--routes') + 1]!).sort()).toEqual(nats);
    }
    expect(services['kurrentdb'].image).toMatch(/kurrentdb/);
    for (const n of ['ironclad-1', 'ironclad-2', 'ironclad-3']) {
      const env = services[n].environment as Record<string, string>;
      expect(hostsOf(env['NATS_URL']!).sort()).toEqual(nats);
      expect(new URL(env['KURRENTDB_URL']!).hostname).toBe('kurrentdb');
      expect(Object.keys(services[n].depends_on).sort()).toEqual(['kurrentdb', ...nats]);
    }
  });

  it('configures Ironclad only with keys it accepts', () => {
    const env = { ...(services['ironclad-1'].environment as Record<string, string>) };
    expect(env['IRONCLAD_TOKENS']).toMatch(/^\$\{IRONCLAD_TOKENS:\?/); // required, never a default token
    expect(env['IRONCLAD_SECRET_KEY']).toMatch(/^\$\{IRONCLAD_SECRET_KEY:\?/);
    expect(() => parseConfig({ ...env, IRONCLAD_TOKENS: 't=default:admin', IRONCLAD_SECRET_KEY: KEY, IRONCLAD_WEBHOOK_SECRET: 's' })).not.toThrow();
  });
});

describe('deploy/k8s', () => {
  const docs = k8sDocs();
  const find = (kind: string, name: string): Doc => {
    const d = docs.find((x) => x.kind === kind && x.metadata.name === name);
    if (!d) throw new Error(`no ${kind} ${name} in deploy/k8s`);
    return d;
  };

  it('lists every manifest in kustomization.yaml', () => {
    const k = parse(read('k8s', 'kustomization.yaml')) as { resources: string[] };
    const files = readdirSync(join(DEPLOY, 'k8s')).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml');
    expect([...k.resources].sort()).toEqual(files.sort());
  });

  it('runs NATS as a 3-replica StatefulSet with JetStream on a volume, clustered', () => {
    const nats = find('StatefulSet', 'nats');
    expect(nats.spec.replicas).toBe(3);
    expect(nats.spec.serviceName).toBe('nats-headless');
    expect(nats.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    const conf = find('ConfigMap', 'nats-config').data!['nats.conf']!;
    expect(conf).toMatch(/jetstream \{[^}]*store_dir: \/data/);
    expect(conf.match(/nats-\d\.nats-headless/g)).toHaveLength(3);
  });

  it('runs Ironclad as a 3-replica Deployment behind a Service, configured from a ConfigMap and a Secret', () => {
    const deployment = find('Deployment', 'ironclad');
    expect(deployment.spec.replicas).toBe(3);
    const pod = deployment.spec.template;
    const service = find('Service', 'ironclad');
    expect(pod.metadata.labels).toMatchObject(service.spec.selector);
    const container = pod.spec.containers[0];
    expect(container.envFrom).toEqual([{ configMapRef: { name: 'ironclad-config' } }, { secretRef: { name: 'ironclad-secrets' } }]);
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    const config = find('ConfigMap', 'ironclad-config').data!;
    const secret = find('Secret', 'ironclad-secrets').stringData!;
    expect(Object.keys(secret).sort()).toEqual(['IRONCLAD_SECRET_KEY', 'IRONCLAD_TOKENS', 'IRONCLAD_WEBHOOK_SECRET']);
    expect(hostsOf(config['NATS_URL']!)).toHaveLength(3);
    expect(() => parseConfig({ ...config, ...secret, IRONCLAD_SECRET_KEY: KEY })).not.toThrow();
    // The placeholder key must fail the start rather than run with a guessable key.
    expect(() => parseConfig({ ...config, ...secret })).toThrow(/IRONCLAD_SECRET_KEY/);
  });
});

describe('deploy/nats', () => {
  const files = readdirSync(join(DEPLOY, 'nats')).filter((n) => n.endsWith('.json'));
  const json = (f: string): Record<string, any> => JSON.parse(read('nats', f)) as Record<string, any>;

  it('is the single source of the definitions the code applies', () => {
    const loaded = [...Object.values(NATS_DEFINITIONS.streams), ...Object.values(NATS_DEFINITIONS.consumers)];
    expect(loaded).toHaveLength(files.length);
    for (const f of files) {
      const name = f.replace(/\.json$/, '').split('-').pop();
      const def = json(f);
      expect(loaded, f).toContainEqual(def);
      if (f.startsWith('stream-')) expect(def['name']).toBe(name);
    }
  });

  it('keeps the streams consistent with the subjects and with each other', () => {
    const { commands, replies, work, events } = NATS_DEFINITIONS.streams;
    expect(commands.subjects).toEqual([`${SUBJECT_ROOT.commands}.>`]);
    expect(replies.subjects).toEqual([`${SUBJECT_ROOT.replies}.>`]);
    expect(work.subjects).toEqual([`${SUBJECT_ROOT.work}.>`]);
    expect(events.subjects).toEqual([`${SUBJECT_ROOT.events}.>`]);
    expect([commands.retention, work.retention, events.retention, replies.retention]).toEqual(['workqueue', 'workqueue', 'limits', 'limits']);
    for (const s of [commands, replies, work, events]) expect(s.duplicate_window!).toBeLessThanOrEqual(s.max_age!);
    // A command retried within its duplicate window must still find the first reply.
    expect(replies.max_age!).toBeGreaterThanOrEqual(commands.duplicate_window!);
    expect(replies.max_msgs_per_subject).toBe(1);
    expect(NATS_DEFINITIONS.consumers.workers).toMatchObject({ ack_policy: 'explicit', durable_name: 'workers' });
  });
});
