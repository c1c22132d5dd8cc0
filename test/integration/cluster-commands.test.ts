/**
 * Commands across a fleet (issue 3 "Commands and acks", "Many processes"): 2–3 Ironclads in this
 * test process, each with its own data dir, all on one shared SQLite event store file and one real
 * nats-server. Every append is recorded with the writer and whether the writer held the entity's
 * partition lease at that moment, so the tests can check that no entity is written by two
 * processes and never by a process that does not own it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import type { LightMyRequestResponse } from 'fastify';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { parseConfig } from '../../src/config.js';
import { createIronclad, type Ironclad } from '../../src/main.js';
import { openSqlite } from '../../src/adapters/sqlite/open.js';
import { createSqliteEventStore } from '../../src/adapters/sqlite/event-store.js';
import { createSqliteSnapshotStore } from '../../src/adapters/sqlite/snapshot-store.js';
import type { ActorHost } from '../../src/app/cluster/actor-host.js';
import { NotOwnerError } from '../../src/app/cluster/actor-host.js';
import { commandMsgId } from '../../src/app/cluster/command-router.js';
import { entityHandler } from '../../src/app/cluster/entity-commands.js';
import type { ClusterParts } from '../../src/app/cluster/cluster.js';
import type { NodeService } from '../../src/app/nodes/node-service.js';
import type { ActorRuntime } from '../../src/runtime/actor-runtime.js';
import type { NodeState } from '../../src/domain/node/state.js';
import { SYSTEM } from '../../src/domain/principal.js';
import type { EventStore } from '../../src/ports/event-store.js';
import { expectProblem } from '../support/expect-problem.js';
import { testTemplate } from '../support/stack-api.js';
import { natsServerOrSkip, startNatsServer, type NatsServer } from '../support/nats-server.js';
import { waitFor } from '../support/wait-for.js';

const P = 8;
const WAIT = { timeoutMs: 20_000 };

interface Write {
  member: number;
  stream: string;
  /** The writer held the entity's partition lease when the append was confirmed. */
  owned: boolean;
}

interface Member {
  n: number;
  ic: Ironclad;
  cluster: ClusterParts;
  host: ActorHost;
  runtime: ActorRuntime<NodeState>;
  nodes: NodeService;
  req(method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

if (natsServerOrSkip('cluster commands')) {
  describe('commands across a fleet', () => {
    let server: NatsServer;
    let dir: string;
    let storeFile: string;
    let members: Member[] = [];
    let writes: Write[] = [];
    const secretKey = randomBytes(32).toString('hex');

    beforeAll(async () => {
      server = await startNatsServer();
    });
    afterAll(async () => {
      await server?.stop();
    });
    afterEach(async () => {
      await Promise.all(members.map((m) => m.close()));
      members = [];
      writes = [];
      rmSync(dir, { recursive: true, force: true });
      const nc = await connect({ servers: server.url });
      const jsm = await jetstreamManager(nc);
      for await (const s of jsm.streams.names()) await jsm.streams.delete(s);
      await nc.close();
    });

    /** One Ironclad of the fleet; its event store is the shared file, wrapped to record who writes. */
    const start = async (env: Record<string, string> = {}): Promise<Member> => {
      if (members.length === 0) {
        dir = mkdtempSync(join(tmpdir(), 'ironclad-fleet-'));
        storeFile = join(dir, 'events.db');
      }
      const n = members.length + 1;
      const config = parseConfig({
        IRONCLAD_DATA_DIR: join(dir, `p${n}`), NATS_URL: server.url, IRONCLAD_EVENT_STORE_FILE: storeFile, PORT: String(9000 + n),
        IRONCLAD_PARTITIONS: String(P), IRONCLAD_LEASE_TTL_MS: '1500', IRONCLAD_POWER_SYNC_S: '0', IRONCLAD_SHED_EVENT_LOOP_DELAY_MS: '0',
        IRONCLAD_SECRET_KEY: secretKey, IRONCLAD_WEBHOOK_SECRET: 'w'.repeat(32), ...env,
      });
      const sdb = openSqlite(storeFile);
      const base = createSqliteEventStore(sdb);
      let ic: Ironclad | null = null;
      const store: EventStore = {
        ...base,
        async append(stream, events, expected, time) {
          const res = await base.append(stream, events, expected, time);
          const cluster = ic?.internals['cluster'] as ClusterParts | undefined;
          writes.push({ member: n, stream, owned: cluster?.leases.ownsEntity(stream.slice(stream.indexOf('-') + 1)) ?? false });
          return res;
        },
        async close() {
          await base.close();
          sdb.close();
        },
      };
      ic = await createIronclad({ config, store, snapshots: createSqliteSnapshotStore(sdb), logger: pino({ level: 'silent' }) as never });
      const m: Member = {
        n, ic,
        cluster: ic.internals['cluster'] as ClusterParts,
        host: ic.internals['host'] as ActorHost,
        runtime: ic.internals['runtime'] as ActorRuntime<NodeState>,
        nodes: ic.internals['nodes'] as NodeService,
        req: (method, url, payload, headers) => ic!.app.inject({ method, url, payload: payload as never, headers }),
        close: () => ic!.close(),
      };
      members.push(m);
      return m;
    };
    const fleet = async (size: number, env: Record<string, string> = {}): Promise<Member[]> => {
      const ms: Member[] = [];
      for (let i = 0; i < size; i++) ms.push(await start(env));
      await Promise.all(ms.map((m) => m.ic.start()));
      await balanced(ms);
      return ms;
    };
    const balanced = (ms: Member[]): Promise<void> => waitFor(() => {
      const sizes = ms.map((m) => m.host.serving().length);
      return sizes.reduce((a, b) => a + b) === P && Math.max(...sizes) - Math.min(...sizes) <= 1 && new Set(ms.flatMap((m) => m.host.serving())).size === P;
    }, { ...WAIT, what: `${P} partitions served once each by ${ms.length} members` });
    const enroll = async (via: Member, name?: string): Promise<string> => {
      const r = await via.req('POST', '/v1/nodes', { driver: 'fake', resource_class: 'x', ...(name ? { name } : {}) });
      expect(r.statusCode, r.body).toBe(201);
      return r.json().id as string;
    };
    const manage = (via: Member, id: string, headers?: Record<string, string>) => via.req('PUT', `/v1/nodes/${id}/states/provision`, { target: 'manage' }, headers);
    const ownerOf = (ms: Member[], id: string): Member => {
      const o = ms.filter((m) => m.cluster.leases.ownsEntity(id));
      expect(o).toHaveLength(1);
      return o[0]!;
    };
    /** Every stream was written only by members holding its lease, and (when `single`) by one member only. */
    const expectExclusiveWrites = (single: boolean): void => {
      expect(writes.filter((w) => !w.owned)).toEqual([]);
      if (!single) return;
      const writers = new Map<string, Set<number>>();
      for (const w of writes) writers.set(w.stream, (writers.get(w.stream) ?? new Set()).add(w.member));
      expect([...writers].filter(([, s]) => s.size > 1)).toEqual([]);
    };

    it('any process accepts any command; only the partition owner decides it', async () => {
      const ms = await fleet(3);
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) ids.push(await enroll(ms[i % 3]!, `n-${i}`));
      for (const [i, id] of ids.entries()) {
        const r = await manage(ms[(i + 1) % 3]!, id);
        expect(r.statusCode, r.body).toBe(202);
        expect(['queued', 'running']).toContain(r.json().state);
      }
      // Read-your-writes from a third process: the shared log holds what the owner appended.
      const seen = await ms[(ids.length + 2) % 3]!.req('GET', `/v1/nodes/${ids[0]}`);
      expect(seen.statusCode).toBe(200);
      expect(writes.length).toBeGreaterThanOrEqual(24);
      for (const id of ids) expect(new Set(writes.filter((w) => w.stream === `node-${id}`).map((w) => w.member))).toEqual(new Set([ownerOf(ms, id).n]));
      expectExclusiveWrites(true);
    });

    it('stack commands are routed to the owner the same way; stack names are unique across the fleet', async () => {
      const ms = await fleet(2);
      // Created through ms[0] until one stack lands in a partition of ms[1] (ids are random).
      let id = '';
      for (let i = 0; i < 20 && (id === '' || ownerOf(ms, id) !== ms[1]); i++) {
        const created = await ms[0]!.req('POST', '/v1/stacks', { name: `s-${i}`, template: testTemplate({ a: { value: i } }) });
        expect(created.statusCode, created.body).toBe(202);
        id = created.json().stack.id as string;
      }
      expect(ownerOf(ms, id)).toBe(ms[1]);
      expect(new Set(writes.filter((w) => w.stream === `stack-${id}`).map((w) => w.member))).toEqual(new Set([ms[1]!.n]));
      expectProblem(await ms[1]!.req('POST', '/v1/stacks', { name: 's-0', template: testTemplate({ a: { value: 2 } }) }), 409, 'name_conflict');
      expectExclusiveWrites(true);
    });

    it('rejections travel back as the owner raised them (status, code, body)', async () => {
      const ms = await fleet(2);
      const id = await enroll(ms[0]!);
      const owner = ownerOf(ms, id);
      const other = ms.find((m) => m !== owner)!;
      const r = await other.req('PUT', `/v1/nodes/${id}/states/provision`, { target: 'deploy' });
      expectProblem(r, 409, 'invalid_state');
      expect(r.json().current_state).toBe('enroll');
      expectProblem(await other.req('PUT', `/v1/nodes/${randomUUID()}/states/provision`, { target: 'manage' }), 404, 'not_found');
    });

    it('a name is unique across the fleet (claims shared in KV)', async () => {
      const ms = await fleet(2);
      await enroll(ms[0]!, 'shared-name');
      expectProblem(await ms[1]!.req('POST', '/v1/nodes', { driver: 'fake', resource_class: 'x', name: 'shared-name' }), 409, 'name_conflict');
    });

    it('name claims left by a request that died before its append are dropped at reconcile; backed ones stay', async () => {
      const [m] = await fleet(1);
      await enroll(m!, 'kept');
      const claims = m!.cluster.names.node;
      expect(await claims.claim('default', 'ghost', randomUUID())).toBe(true); // claimed, never enrolled
      expectProblem(await m!.req('POST', '/v1/nodes', { driver: 'fake', resource_class: 'x', name: 'ghost' }), 409, 'name_conflict');
      const nodesRM = m!.ic.internals['nodesRM'] as { get(id: string): NodeState | undefined; allLive(): NodeState[] };
      await waitFor(() => nodesRM.allLive().length === 1, WAIT);
      const source = { get: (id: string) => nodesRM.get(id), allNamed: () => nodesRM.allLive() };
      expect(await claims.reconcile(source, 60_000)).toEqual({ dropped: 0, added: 0 }); // too young: may be a request still running elsewhere
      expect(await claims.reconcile(source, -1)).toEqual({ dropped: 1, added: 0 });
      await enroll(m!, 'ghost');
      expectProblem(await m!.req('POST', '/v1/nodes', { driver: 'fake', resource_class: 'x', name: 'kept' }), 409, 'name_conflict');
    });

    it('an Idempotency-Key is honoured by every process (records shared in KV)', async () => {
      const ms = await fleet(2);
      const id = await enroll(ms[0]!);
      const first = await manage(ms[0]!, id, { 'idempotency-key': 'k-1' });
      expect(first.statusCode).toBe(202);
      const again = await manage(ms[1]!, id, { 'idempotency-key': 'k-1' });
      expect(again.statusCode).toBe(202);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.json().id).toBe(first.json().id);
    });

    it('an unconfirmed command answers 503 overloaded (command_not_confirmed) with Retry-After; the retry with the same key gets its outcome, applied once', async () => {
      const ms = await fleet(2, { IRONCLAD_COMMAND_TIMEOUT_MS: '1500' });
      const id = await enroll(ms[0]!);
      const owner = ownerOf(ms, id);
      const api = ms.find((m) => m !== owner)!;
      await owner.host.stop(); // the owner holds the lease but does not answer (stuck)
      const timedOut = await manage(api, id, { 'idempotency-key': 'slow-1' });
      expectProblem(timedOut, 503, 'overloaded');
      expect(timedOut.json().reason).toBe('command_not_confirmed');
      expect(timedOut.headers['retry-after']).toBe('2');
      expect(timedOut.json().detail).toMatch(/same Idempotency-Key/);
      await owner.host.start(); // the command waited in the stream: it is decided now
      const stream = `node-${id}`;
      await waitFor(() => writes.filter((w) => w.stream === stream).length === 2, { ...WAIT, what: 'the queued command was applied' });
      const retry = await manage(api, id, { 'idempotency-key': 'slow-1' });
      expect(retry.statusCode, retry.body).toBe(202);
      const events = await api.ic.store.readStream(stream);
      const commandId = timedOut.json().command_id as string;
      const applied = events.filter((e) => e.metadata['command_id'] === commandId);
      expect(applied.length).toBeGreaterThan(0);
      expect(new Set(applied.map((e) => e.data['task_id']).filter(Boolean))).toEqual(new Set([retry.json().id])); // the retry answers with the first outcome
      expect(events.filter((e) => e.type === applied[0]!.type)).toHaveLength(1); // decided once
      expectExclusiveWrites(true);
    });

    it('a keyed or redelivered command already in the log is answered from the log, not decided again', async () => {
      const [m] = await fleet(1);
      const id = await enroll(m!);
      const first = await manage(m!, id, { 'idempotency-key': 'log-1' });
      expect(first.statusCode).toBe(202);
      const principal = { id: 'open', tenant: 'default', role: 'admin' as const };
      const commandId = commandMsgId('node', principal, id, { type: 'RequestProvision' }, { request_id: null, idempotency_key: 'log-1' });
      const handler = (retentionMs: number) => entityHandler({ kind: 'node', decideLocally: m!.nodes.decideLocally, runtime: m!.runtime, store: m!.ic.store, retentionMs, now: () => Date.now() });
      const found = await handler(3_600_000).applied!(id, commandId);
      expect(found?.task?.id).toBe(first.json().id);
      expect(found?.position).toBe(first.headers['ironclad-position']);
      expect(await handler(3_600_000).applied!(id, 'k-unknown')).toBeNull();
      expect(await handler(-60_000).applied!(id, commandId)).toBeNull(); // older than the key's retention: a new request
    });

    it('a process that stops renewing is fenced, its partitions are taken over within seconds, and its nodes keep taking commands', async () => {
      const ms = await fleet(3);
      const [hung, ...rest] = ms as [Member, Member, Member];
      const ids: string[] = [];
      // Enough nodes that the process about to hang decided some of them (ids are random).
      for (let i = 0; i < 40 && ids.filter((id) => hung.cluster.leases.ownsEntity(id)).length < 3; i++) ids.push(await enroll(ms[i % 3]!));
      const orphans = ids.filter((id) => hung.cluster.leases.ownsEntity(id));
      expect(orphans.length).toBe(3);
      expect(hung.runtime.cachedCount()).toBeGreaterThan(0);
      hung.cluster.leases.stopRenewing(); // a crash as far as the fleet can tell: nothing released
      await waitFor(() => hung.host.serving().length === 0, { ...WAIT, what: 'the hung process stopped serving (self-fenced)' });
      expect(hung.runtime.cachedCount()).toBe(0); // its actors were evicted with their partitions
      await expect(hung.nodes.decideLocally(SYSTEM, orphans[0]!, { type: 'SetMaintenance', reason: null }, { request_id: null, idempotency_key: null }))
        .rejects.toBeInstanceOf(NotOwnerError);
      await balanced(rest);
      for (const id of orphans) {
        const r = await manage(hung, id); // even through the fenced process's API: routed to the new owner
        expect(r.statusCode, r.body).toBe(202);
      }
      expect(new Set(writes.filter((w) => orphans.some((id) => w.stream === `node-${id}`) && w.member !== hung.n).map((w) => w.member)).size).toBeGreaterThan(0);
      expectExclusiveWrites(false); // an orphan was written by two processes, one after the other, each while it held the lease
    });

    it('a graceful close releases the leases at once: the others serve its partitions long before the TTL', async () => {
      const ms = await fleet(2, { IRONCLAD_LEASE_TTL_MS: '60000' });
      const [leaving, staying] = ms as [Member, Member];
      const ids: string[] = [];
      for (let i = 0; i < 40 && ids.filter((id) => leaving.cluster.leases.ownsEntity(id)).length < 2; i++) ids.push(await enroll(ms[0]!));
      const theirs = ids.filter((id) => leaving.cluster.leases.ownsEntity(id));
      expect(theirs.length).toBe(2);
      await leaving.close();
      await waitFor(() => staying.host.serving().length === P, { timeoutMs: 10_000, what: 'the survivor serves every partition' });
      for (const id of theirs) expect((await manage(staying, id)).statusCode).toBe(202);
      expectExclusiveWrites(false);
    });

    it('/readyz says not ready until the process has joined and caught up, then lists its partitions', async () => {
      const m = await start();
      const before = await m.req('GET', '/readyz');
      expect(before.statusCode).toBe(503);
      expect(before.json().checks.cluster).toBe('joining');
      await m.ic.start();
      await waitFor(() => m.host.serving().length === P, WAIT);
      const after = await m.req('GET', '/readyz');
      expect(after.statusCode, after.body).toBe(200);
      expect(after.json().checks.cluster).toMatch(new RegExp(`^member [0-9a-f-]{36} of 1: partitions \\[0,1,2,3,4,5,6,7\\] of ${P}, leader of notifier,power-sync,purge$`));
    });
  });
}
