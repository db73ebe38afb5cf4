/**
 * Several TunnelPulse processes on one database divide the endpoints through leases (src/service/lease-keeper.ts).
 * Each "node" here is the service's ingest side wired as `src/service/service.ts` wires it with leases on — its
 * own Runtime, Persister, leased EndpointRegistry and LeaseKeeper (and, on a PostgreSQL server, its own
 * connection through a cuttable TCP proxy) — against the simulator over real sockets. Short leases (1.5 s TTL,
 * renewed every 300 ms) so takeovers show within a test.
 *
 * Checked all along by a sampler: no endpoint ever has an actor in two nodes at once. At the end of each
 * scenario: every enabled endpoint is held by exactly one node, its master has exactly one open stream, and the
 * traffic stored in the database equals the master's counters (nothing lost or counted twice across handoffs).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/connection.js';
import { EndpointsRepo } from '../../src/db/endpoints-repo.js';
import { LeaseRepo } from '../../src/db/leases.js';
import { SecretBox } from '../../src/db/secret-box.js';
import { Store } from '../../src/db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../../src/persistence/persister.js';
import { DEFAULT_SUPERVISORS, Runtime } from '../../src/runtime/runtime.js';
import { Stats } from '../../src/runtime/stats.js';
import { LeaseKeeper } from '../../src/service/lease-keeper.js';
import { EndpointRegistry } from '../../src/service/registry.js';
import { startService, type Service } from '../../src/service/service.js';
import { startSimulator, type HostedMaster, type SimulatorHandle } from '../../src/sim/simulator.js';
import { FAST_ENDPOINT_SETTINGS, stateOf, sumCounters, waitFor } from '../e2e/support/ingest.js';
import { useTestDatabase } from '../support/database.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const SERVER = process.env['TEST_DATABASE_URL'];
const TTL_MS = 1_500;
const RENEW_MS = 300;
const SECRET_KEY = randomBytes(32);
const COUNTERS = ['tcprx', 'tcptx', 'udprx', 'udptx'] as const;

const testDb = useTestDatabase();

interface Node {
  name: string;
  runtime: Runtime;
  registry: EndpointRegistry;
  persister: Persister;
  keeper: LeaseKeeper;
  stats: Stats;
  proxy: TcpProxy | null;
  /** Endpoint ids whose actor runs in this node. */
  actors(): number[];
  /** A clean shutdown, as the service's `stop()`: leases released at once. */
  stop(): Promise<void>;
  /** Closes what is left after a test (a node cut off from the database included). */
  dispose(): Promise<void>;
}

const nodes: Node[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
let sim: SimulatorHandle | undefined;
let overlaps: string[] = [];
let sampler: NodeJS.Timeout | undefined;
let pump: NodeJS.Timeout | undefined;

async function startNode(name: string, options: { ownConnection?: boolean } = {}): Promise<Node> {
  let db: Pick<Database, 'sql'> = testDb.db;
  let proxy: TcpProxy | null = null;
  let own: Database | null = null;
  if (options.ownConnection) {
    // Its own connection to the test's schema, through a proxy the test can cut (a partitioned process).
    const [row] = await testDb.sql<{ schema: string }[]>`SELECT current_schema() AS schema`;
    const schema = row!.schema;
    const target = new URL(SERVER!);
    proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    own = await openDatabase({ url: proxy.url(SERVER!), schema, max: 2 });
    db = own;
  }
  const repo = new EndpointsRepo(db, new SecretBox(SECRET_KEY));
  const store = new Store(db, { logDailyCap: 100_000 });
  const stats = new Stats();
  const flush = { logBatchSize: 100, logFlushMs: 200, stateFlushMs: 200 };
  const persister = new Persister(store, stats, Date.now, { ...DEFAULT_PERSISTER_SETTINGS, ...flush, closeTimeoutMs: 3_000 });
  const runtime = new Runtime({ stats, persister, endpointSettings: FAST_ENDPOINT_SETTINGS, supervisors: DEFAULT_SUPERVISORS(flush), masterRequestTimeoutMs: 2_000 });
  runtime.start();
  const leases = new LeaseRepo(db, `${name}:${randomBytes(3).toString('hex')}`);
  const registry = new EndpointRegistry({
    repo,
    store,
    runtime,
    flushPending: () => persister.drain(),
    leased: true,
    leaseHolder: (id) => leases.holder(id),
    leaseReleaseWaitMs: TTL_MS + RENEW_MS,
  });
  const keeper = new LeaseKeeper({
    leases,
    registry,
    flushPending: () => persister.drain(),
    ttlMs: TTL_MS,
    renewEveryMs: RENEW_MS,
    onError: () => stats.add('dbErrors'),
  });
  registry.endpointsChanged = () => keeper.poke();
  await registry.restoreAll();
  await keeper.start();
  let stopped = false;
  const node: Node = {
    name,
    runtime,
    registry,
    persister,
    keeper,
    stats,
    proxy,
    actors: () => runtime.endpoints().map((e) => e.endpointId).sort((a, b) => a - b),
    async stop() {
      if (stopped) return;
      stopped = true;
      await keeper.stop(3_000);
      await runtime.stop().catch(() => undefined);
      nodes.splice(nodes.indexOf(node), 1);
    },
    async dispose() {
      if (!stopped) {
        stopped = true;
        await keeper.stop(1_000);
        await runtime.stop().catch(() => undefined);
      }
      await own?.sql.end({ timeout: 0 });
      await proxy?.close();
    },
  };
  nodes.push(node);
  cleanups.push(() => node.dispose());
  return node;
}

/** Fails the test later if two nodes ever run an actor for the same endpoint at the same moment. */
function watchForOverlaps(): void {
  overlaps = [];
  sampler = setInterval(() => {
    const seen = new Map<number, string>();
    for (const node of nodes) {
      for (const id of node.actors()) {
        const other = seen.get(id);
        if (other) overlaps.push(`endpoint ${id} in ${other} and ${node.name}`);
        seen.set(id, node.name);
      }
    }
  }, 10);
}

/** Traffic on every instance of every master, 10 times a second (deterministic amounts). */
function pumpTraffic(masters: readonly HostedMaster[]): void {
  let round = 0;
  pump = setInterval(() => {
    round++;
    for (const master of masters) {
      for (const [i, id] of master.instanceIds().entries()) master.addTraffic(id, { tcprx: 100 + i, tcptx: 7 * round, udprx: 3, udptx: i });
      master.checkpoint();
    }
  }, 100);
}

/** Ids held per node (by running actors), and whether they form an exact partition of `expected`. */
function division(expected: readonly number[]): { perNode: Record<string, number[]>; exact: boolean } {
  const perNode = Object.fromEntries(nodes.map((n) => [n.name, n.actors()]));
  const all = Object.values(perNode).flat().sort((a, b) => a - b);
  return { perNode, exact: JSON.stringify(all) === JSON.stringify([...expected].sort((a, b) => a - b)) };
}

function matchesMaster(runtime: Runtime, endpointId: number, master: HostedMaster): boolean {
  const ids = master.instanceIds();
  if (runtime.tunnels(endpointId).filter((t) => !t.deleted).length !== ids.length) return false;
  return ids.every((id) => {
    const ours = runtime.tunnel(endpointId, id);
    const theirs = master.instance(id)!;
    return ours !== null && COUNTERS.every((k) => ours.counters[k] === theirs[k]);
  });
}

/** Stops the traffic, waits until each endpoint's holder shows its master's counters, writes, compares the rows. */
async function expectTrafficExact(byEndpoint: Map<number, HostedMaster>): Promise<void> {
  clearInterval(pump);
  for (const [id, master] of byEndpoint) {
    await waitFor(`endpoint ${id} matches its master`, () => nodes.some((n) => n.actors().includes(id) && matchesMaster(n.runtime, id, master)), 15_000);
  }
  for (const node of nodes) await node.persister.drain();
  const store = new Store(testDb.db, { logDailyCap: 100_000 });
  for (const [id, master] of byEndpoint) {
    const expected = sumCounters(master.instanceIds().map((i) => master.instance(i)!));
    expect(await store.sumTunnelTraffic({ endpointId: id }), `endpoint ${id}`).toEqual(expected);
  }
}

/**
 * Waits until each endpoint's first snapshot was taken (and stored): the first sample of a tunnel is its
 * baseline and counts nothing (actors/traffic.ts rule 1), so traffic starts only after it.
 */
async function waitForSnapshots(byEndpoint: Map<number, HostedMaster>): Promise<void> {
  for (const [id, master] of byEndpoint) {
    await waitFor(`endpoint ${id} snapshot`, () => nodes.some((n) => n.actors().includes(id) && matchesMaster(n.runtime, id, master)));
  }
  for (const node of nodes) await node.persister.drain();
}

/** Every master has exactly one open stream (its holder's). */
async function expectOneStreamPerMaster(masters: readonly HostedMaster[]): Promise<void> {
  await waitFor('one open stream per master', () => masters.every((m) => m.stats().connections === 1), 10_000);
}

beforeEach(async () => {
  await testDb.reset();
  watchForOverlaps();
});

afterEach(async () => {
  clearInterval(sampler);
  clearInterval(pump);
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  nodes.length = 0;
  await sim?.close();
  sim = undefined;
});

describe('endpoint leases across processes', () => {
  it('divides the endpoints fairly, hands them over on a clean stop, rebalances when a process joins', async () => {
    sim = await startSimulator({ masters: 7, instances: 2, reportIntervalMs: 0, seed: 'leases-divide' });
    const masters = sim.masters;
    const a = await startNode('a');
    const b = await startNode('b');
    const c = await startNode('c');

    // Endpoints registered through one node's API (the registry) are claimed by whoever has room.
    const byEndpoint = new Map<number, HostedMaster>();
    for (const master of masters.slice(0, 6)) {
      const row = await a.registry.create({ name: master.name, url: master.url, apiKey: master.apiKey });
      byEndpoint.set(row.id, master);
    }
    const six = [...byEndpoint.keys()];
    await waitFor('6 endpoints divided 2/2/2', () => {
      const d = division(six);
      return d.exact && Object.values(d.perNode).every((ids) => ids.length === 2) && d;
    });
    // Every node lists every endpoint (those held elsewhere without an actor), and every actor streams.
    await waitFor('b and c list what a created', () => b.registry.list().length === 6 && c.registry.list().length === 6);
    await waitFor('every endpoint streaming', () => nodes.every((n) => n.actors().every((id) => stateOf(n.runtime, id) === 'streaming')));
    await expectOneStreamPerMaster(masters.slice(0, 6));
    await waitForSnapshots(byEndpoint);
    pumpTraffic(masters.slice(0, 6));
    // The database agrees with the actors.
    const owners = await testDb.sql<{ id: number; lease_owner: string }[]>`SELECT id, lease_owner FROM endpoints ORDER BY id`;
    for (const row of owners) expect(nodes.find((n) => n.actors().includes(Number(row.id)))?.keeper.owner).toBe(row.lease_owner);

    // A seventh endpoint added through b shows up at every node's next round and is held once.
    const seventh = await b.registry.create({ name: masters[6]!.name, url: masters[6]!.url, apiKey: masters[6]!.apiKey });
    byEndpoint.set(seventh.id, masters[6]!);
    const seven = [...byEndpoint.keys()];
    await waitFor('the 7th endpoint held by one node', () => division(seven).exact);
    await waitFor('a and c list it', () => a.registry.get(seventh.id) !== null && c.registry.get(seventh.id) !== null);

    // A clean stop releases at once: the others take over at their next round (well within one TTL).
    const stoppedAt = Date.now();
    await c.stop();
    await waitFor('a and b hold all 7', () => division(seven).exact, TTL_MS + 5_000);
    const takeoverMs = Date.now() - stoppedAt;
    console.log(`clean stop → takeover of c's endpoints in ${takeoverMs} ms (TTL ${TTL_MS} ms, renewal ${RENEW_MS} ms)`);
    await waitFor('a and b hold 4 and 3', () => [a, b].map((n) => n.actors().length).sort().join() === '3,4');

    // A new process joins: the others give up what exceeds the new fair share (ceil(7/3) = 3), it claims them.
    const joinedAt = Date.now();
    const d = await startNode('d');
    // 3/3/1 would respect the share; the spread must end at most one apart (3/2/2 in some order).
    await waitFor('rebalanced to 3/2/2 with d', () => {
      const counts = nodes.map((n) => n.actors().length);
      return division(seven).exact && Math.max(...counts) - Math.min(...counts) <= 1;
    }, 15_000);
    console.log(`join → rebalanced in ${Date.now() - joinedAt} ms`);
    await waitFor('every endpoint streaming', () => nodes.every((n) => n.actors().every((id) => stateOf(n.runtime, id) === 'streaming')));
    await expectOneStreamPerMaster(masters);

    // Disabled through one node: its holder stops it at the next round and nobody claims it.
    await d.registry.setEnabled(seventh.id, false);
    await waitFor('the disabled endpoint runs nowhere', () => division(six).exact);
    byEndpoint.delete(seventh.id);

    // Removed through a node that does not hold it: the holder stops it, writes its queue and lets go first, so
    // no write of its fails against the deleted row.
    const removed = [...byEndpoint.keys()][0]!;
    const holder = nodes.find((n) => n.actors().includes(removed))!;
    const remover = nodes.find((n) => n !== holder)!;
    const errorsBefore = holder.stats.snapshot().databaseErrors;
    await remover.registry.remove(removed);
    expect(holder.actors()).not.toContain(removed);
    byEndpoint.delete(removed);
    const five = [...byEndpoint.keys()];
    await waitFor('five endpoints divided', () => division(five).exact);
    await holder.persister.drain();
    expect(holder.stats.snapshot().databaseErrors).toBe(errorsBefore);
    expect(await testDb.sql`SELECT 1 FROM endpoints WHERE id = ${removed}`).toHaveLength(0);

    await expectTrafficExact(byEndpoint);
    expect(overlaps).toEqual([]);
    for (const node of nodes) expect(node.keeper.status().failedRounds).toBe(0);
  }, 60_000);

  it.skipIf(!SERVER)('a process cut off from the database stops reading before its leases expire; the others take over; it rejoins', async () => {
    sim = await startSimulator({ masters: 6, instances: 2, reportIntervalMs: 0, seed: 'leases-partition' });
    const masters = sim.masters;
    const a = await startNode('a', { ownConnection: true });
    const b = await startNode('b', { ownConnection: true });
    const c = await startNode('c', { ownConnection: true });
    const byEndpoint = new Map<number, HostedMaster>();
    for (const master of masters) byEndpoint.set((await a.registry.create({ name: master.name, url: master.url, apiKey: master.apiKey })).id, master);
    const all = [...byEndpoint.keys()];
    await waitFor('divided 2/2/2', () => division(all).exact && nodes.every((n) => n.actors().length === 2));
    await expectOneStreamPerMaster(masters);
    await waitForSnapshots(byEndpoint);
    pumpTraffic(masters);

    // Cut c off (a hung network: its renewal neither answers nor fails).
    const held = c.actors();
    const cutAt = Date.now();
    c.proxy!.cut('blackhole');
    await waitFor('c stopped reading', () => c.actors().length === 0, TTL_MS + 5_000);
    const stoppedReadingMs = Date.now() - cutAt;
    await waitFor('a and b took over c\'s endpoints', () => held.every((id) => a.actors().includes(id) || b.actors().includes(id)), TTL_MS + 5_000);
    const takeoverMs = Date.now() - cutAt;
    console.log(`partition → c stopped reading after ${stoppedReadingMs} ms, a/b took over after ${takeoverMs} ms (TTL ${TTL_MS} ms)`);
    expect(c.keeper.status().expirations).toBe(1);
    expect(stoppedReadingMs).toBeLessThan(takeoverMs + 1); // never both reading (the sampler checks every 10 ms too)
    await waitFor('a and b hold all 6', () => division(all).exact && a.actors().length === 3 && b.actors().length === 3);

    // c comes back: a and b give up what exceeds ceil(6/3) = 2, c claims it.
    c.proxy!.restore();
    await waitFor('rebalanced 2/2/2 after c rejoined', () => division(all).exact && nodes.every((n) => n.actors().length === 2), 15_000);
    await expectOneStreamPerMaster(masters);
    // What c queued while cut off is written now and changes nothing it should not (older writes lose).
    await expectTrafficExact(byEndpoint);
    expect(overlaps).toEqual([]);
  }, 60_000);

  it.skipIf(!SERVER)('two services (startService, TUNNELPULSE_LEASES on) share the endpoints added through one HTTP API', async () => {
    sim = await startSimulator({ masters: 4, instances: 2, reportIntervalMs: 0, seed: 'leases-service' });
    const [row] = await testDb.sql<{ schema: string }[]>`SELECT current_schema() AS schema`;
    const secretKey = randomBytes(32).toString('hex'); // both must open the keys either one sealed
    const start = async (name: string): Promise<Service> => {
      const dataDir = mkdtempSync(join(tmpdir(), `tp-leases-${name}-`));
      cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
      const env = { TUNNELPULSE_LEASES: '1', TUNNELPULSE_LEASE_OWNER: `svc-${name}`, TUNNELPULSE_LEASE_TTL_MS: String(TTL_MS), TUNNELPULSE_LEASE_RENEW_MS: String(RENEW_MS) };
      const service = await startService(loadConfig(env, { databaseUrl: SERVER!, databaseSchema: row!.schema, dataDir, secretKey, port: 0, logLevel: 'silent', stateFlushMs: 200, logFlushMs: 200, shutdownFlushMs: 3_000 }));
      cleanups.push(async () => {
        if (!stopped.has(service)) await service.stop();
      });
      return service;
    };
    const stopped = new Set<Service>();
    const one = await start('one');
    const two = await start('two');
    expect(one.leases?.owner).toBe('svc-one');

    for (const master of sim.masters) {
      const res = await fetch(`${one.address}/api/endpoints`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: master.name, url: master.url, apiKey: master.apiKey }) });
      expect(res.status).toBe(201);
    }
    const views = async (service: Service): Promise<{ id: number; connected: boolean }[]> => (await (await fetch(`${service.address}/api/endpoints`)).json()) as never;
    // Both list all four; each runs (and shows connected) only the two it holds.
    await waitFor('divided 2/2 and connected', async () => {
      const [a, b] = [await views(one), await views(two)];
      const connectedA = a.filter((e) => e.connected).map((e) => e.id);
      const connectedB = b.filter((e) => e.connected).map((e) => e.id);
      return a.length === 4 && b.length === 4 && connectedA.length === 2 && connectedB.length === 2 && connectedA.every((id) => !connectedB.includes(id));
    }, 15_000);
    await expectOneStreamPerMaster(sim.masters);

    // A clean stop of one service: the other holds all four well within a TTL.
    stopped.add(two);
    await two.stop();
    await waitFor('one holds all four', async () => (await views(one)).filter((e) => e.connected).length === 4, TTL_MS + 5_000);
    const owners = await testDb.sql<{ lease_owner: string }[]>`SELECT DISTINCT lease_owner FROM endpoints`;
    expect(owners.map((o) => o.lease_owner)).toEqual(['svc-one']);
    expect(await testDb.sql`SELECT owner FROM lease_owners WHERE owner = 'svc-two'`).toHaveLength(0);
  }, 60_000);
});
