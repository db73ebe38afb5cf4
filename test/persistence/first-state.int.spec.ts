/**
 * A tunnel's baseline is durable from its creation (docs/reliability.md, drill 4's finding): the config writer
 * writes the first absolute counters with the creation record, so a crash before the first state flush does not
 * make the restart take a new baseline and lose the traffic in between.
 *
 * A Runtime with its Persister on the test database watches a simulated master over real sockets. Three tunnels
 * are first seen three ways: in the `initial` snapshot at start-up, by a `create` event, and by a log line (the
 * simulator loses its `create` and `update`). Traffic flows, then the runtime is abandoned without drain (its
 * actors and supervisors stopped, its queues never written: a crash) before any state flush. More traffic flows
 * while nothing listens. A second runtime is restored from the same database, sees more traffic, drains; every
 * tunnel's traffic — in memory, in `tunnels` and in its hour buckets — must be exactly what moved since it was
 * first seen.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Counters } from '../../actors/model.js';
import { Store } from '../../src/db/store.js';
import { DEFAULT_PERSISTER_SETTINGS, Persister } from '../../src/persistence/persister.js';
import { tunnelContextFromStore } from '../../src/persistence/restore.js';
import { DEFAULT_SUPERVISORS, Runtime } from '../../src/runtime/runtime.js';
import { Stats } from '../../src/runtime/stats.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { useTestDatabase } from '../support/database.js';
import { configRecord, counters, stateRecord, T0 } from '../db/records.js';
import { createEndpointRow } from './harness.js';

const testDb = useTestDatabase();
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function waitFor(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const countersOf = (c: Counters): Counters => ({ tcprx: c.tcprx, tcptx: c.tcptx, udprx: c.udprx, udptx: c.udptx });
const minus = (a: Counters, b: Counters): Counters => ({ tcprx: a.tcprx - b.tcprx, tcptx: a.tcptx - b.tcptx, udprx: a.udprx - b.udprx, udptx: a.udptx - b.udptx });
const sameCounters = (a: Counters | undefined, b: Counters | undefined) => !!a && !!b && a.tcprx === b.tcprx && a.tcptx === b.tcptx && a.udprx === b.udprx && a.udptx === b.udptx;

describe('a tunnel killed before its first state flush', () => {
  it('resumes from the baseline written with its creation: traffic exact after the restart', async () => {
    await testDb.reset();
    const endpointId = await createEndpointRow(testDb.sql, 'first-state');
    const START_COUNTERS = { tcprx: 7_000_000, tcptx: 9_000_000, udprx: 11_000, udptx: 13_000 };
    const sim: SimulatorHandle = await startSimulator({
      instances: [{ id: 'aaaa0001', url: 'server://:10101/127.0.0.1:8080', counters: START_COUNTERS }],
      reportIntervalMs: 0,
      autoTraffic: false,
      seed: 'first-state',
    });
    cleanups.push(() => sim.close());
    const master = sim.master;
    const def = { id: endpointId, name: 'first-state', baseUrl: master.apiBase, apiKey: master.apiKey, insecureTls: false, enabled: true };
    // Long flush intervals: no state flush (and no log batch) can happen in the first life, deterministically.
    const settings = { ...DEFAULT_PERSISTER_SETTINGS, stateFlushMs: 600_000, logFlushMs: 600_000, logBatchSize: 100_000 };

    // ---- first life ---------------------------------------------------------------------------------------
    const stats1 = new Stats();
    const persister1 = new Persister(new Store(testDb.db), stats1, Date.now, settings);
    const life1 = new Runtime({ stats: stats1, persister: persister1, supervisors: DEFAULT_SUPERVISORS(settings) });
    life1.start();
    life1.addEndpoint(def);
    await waitFor('the initial snapshot', () => life1.tunnel(endpointId, 'aaaa0001') !== null);

    master.createInstance({ id: 'bbbb0002', url: 'client://10.0.0.1:10101/127.0.0.1:8081', counters: { tcprx: 500, tcptx: 600 } });
    // The third tunnel's `create` and `update(running)` never arrive: its first event is a start-up log line.
    master.loseEvents(2);
    master.createInstance({ id: 'cccc0003', url: 'server://:10102/127.0.0.1:8082', counters: { udprx: 42_000, udptx: 43_000 } });
    const ids = ['aaaa0001', 'bbbb0002', 'cccc0003'];
    await waitFor('all three tunnels seen', () => ids.every((id) => life1.tunnel(endpointId, id)?.status === 'running'));
    expect(life1.tunnel(endpointId, 'cccc0003')!.logLines).toBeGreaterThan(0);

    // What each tunnel's counters were when first seen: traffic is measured from there.
    const firstSeen = new Map(ids.map((id) => [id, countersOf(life1.tunnel(endpointId, id)!.counters)]));
    expect(firstSeen.get('aaaa0001')).toEqual(START_COUNTERS);

    // The creation records are written through at once, carrying the baseline.
    const store = new Store(testDb.db);
    await waitFor('the creation records with their baselines', async () => {
      const rows = await store.loadTunnels(endpointId);
      return ids.every((id) => {
        const row = rows.find((r) => r.instanceId === id);
        return row?.config !== null && sameCounters(row?.state?.counters, firstSeen.get(id));
      });
    });

    // Traffic that the first life counts in memory only.
    master.addTraffic('aaaa0001', { tcprx: 100_000, tcptx: 200_000 });
    master.addTraffic('bbbb0002', { tcprx: 3_000, udprx: 70 });
    master.addTraffic('cccc0003', { udprx: 5_000, udptx: 6_000 });
    master.checkpoint();
    await waitFor('the first life to count it', () => ids.every((id) => sameCounters(life1.tunnel(endpointId, id)!.counters, countersOf(master.instance(id)!))));
    expect(life1.tunnel(endpointId, 'aaaa0001')!.traffic.tcprx).toBe(100_000);

    // The crash: actors and supervisors stop, nothing queued is written. No state was ever flushed.
    await persister1.settle();
    expect(stats1.snapshot().queues['state']!.depth).toBe(3);
    life1.fleet.stop();
    const stateRows = await store.loadTunnels(endpointId);
    for (const id of ids) expect(stateRows.find((r) => r.instanceId === id)!.state!.traffic).toEqual({ tcprx: 0, tcptx: 0, udprx: 0, udptx: 0 });

    // Traffic while nobody listens (NodePass keeps no backlog: only its counters remember it).
    master.addTraffic('aaaa0001', { tcprx: 1_000_000, udptx: 9 });
    master.addTraffic('bbbb0002', { tcptx: 40_000 });
    master.addTraffic('cccc0003', { tcprx: 77 });
    master.checkpoint();

    // ---- second life, restored from the same database -----------------------------------------------------
    const stats2 = new Stats();
    const persister2 = new Persister(new Store(testDb.db), stats2, Date.now, { ...settings, stateFlushMs: 200 });
    const life2 = new Runtime({ stats: stats2, persister: persister2, supervisors: DEFAULT_SUPERVISORS({ ...settings, stateFlushMs: 200 }) });
    life2.start();
    cleanups.push(() => life2.stop().catch(() => {}));
    life2.addEndpoint(def, { tunnels: (await store.loadTunnels(endpointId)).map(tunnelContextFromStore) });
    await waitFor('the second life to see the gap', () => ids.every((id) => sameCounters(life2.tunnel(endpointId, id)!.counters, countersOf(master.instance(id)!))));

    master.addTraffic('aaaa0001', { tcprx: 5, tcptx: 6, udprx: 7, udptx: 8 });
    master.addTraffic('bbbb0002', { tcprx: 123_456 });
    master.addTraffic('cccc0003', { udprx: 1 });
    master.checkpoint();
    await waitFor('the second life to count the rest', () => ids.every((id) => sameCounters(life2.tunnel(endpointId, id)!.counters, countersOf(master.instance(id)!))));
    await persister2.drain();

    const rows = await store.loadTunnels(endpointId);
    const buckets = await testDb.sql<{ instance_id: string; tcprx: number; tcptx: number; udprx: number; udptx: number }[]>`
      SELECT instance_id, sum(tcprx)::bigint AS tcprx, sum(tcptx)::bigint AS tcptx, sum(udprx)::bigint AS udprx, sum(udptx)::bigint AS udptx
      FROM traffic_hourly_tunnel WHERE endpoint_id = ${endpointId} GROUP BY instance_id`;
    for (const id of ids) {
      const truth = minus(countersOf(master.instance(id)!), firstSeen.get(id)!);
      expect(countersOf(life2.tunnel(endpointId, id)!.traffic), `${id} in memory`).toEqual(truth);
      expect(rows.find((r) => r.instanceId === id)!.state!.traffic, `${id} in tunnels`).toEqual(truth);
      expect(countersOf(buckets.find((b) => b.instance_id === id)!), `${id} in its hour buckets`).toEqual(truth);
    }
    expect(minus(countersOf(master.instance('aaaa0001')!), START_COUNTERS)).toEqual({ tcprx: 1_100_005, tcptx: 200_006, udprx: 7, udptx: 17 });
  });
});

describe('a tunnel restored without a stored state (a row from before the baseline was written with the creation)', () => {
  it('writes its first sample through as the baseline, so a crash before the first state flush loses nothing', async () => {
    await testDb.reset();
    const endpointId = await createEndpointRow(testDb.sql, 'stateless-row');
    const COUNTERS = { tcprx: 3_000_000, tcptx: 4_000_000, udprx: 5_000, udptx: 6_000 };
    const sim = await startSimulator({
      instances: [{ id: 'dddd0004', url: 'server://:10104/127.0.0.1:8084', counters: COUNTERS }],
      reportIntervalMs: 0,
      autoTraffic: false,
      seed: 'stateless-row',
    });
    cleanups.push(() => sim.close());
    const master = sim.master;
    const id = 'dddd0004';
    const def = { id: endpointId, name: 'stateless-row', baseUrl: master.apiBase, apiKey: master.apiKey, insecureTls: false, enabled: true };
    const store = new Store(testDb.db);
    const wire = master.instance(id)!;
    expect(wire.status).toBe('running');
    // The row holds exactly what the master will report: only the missing baseline can make the first sample a write.
    await store.writeTunnelConfigs([{ ...configRecord(endpointId, id, Date.now() - 60_000, { alias: wire.alias, type: wire.type, url: wire.url, config: wire.config, restart: wire.restart, meta: wire.meta, status: 'running' }) }]);
    const [legacy] = await store.loadTunnels(endpointId);
    expect(legacy!.state).toBeNull();

    const settings = { ...DEFAULT_PERSISTER_SETTINGS, stateFlushMs: 600_000, logFlushMs: 600_000, logBatchSize: 100_000 };
    const persister1 = new Persister(store, new Stats(), Date.now, settings);
    const life1 = new Runtime({ persister: persister1, supervisors: DEFAULT_SUPERVISORS(settings) });
    life1.start();
    life1.addEndpoint(def, { tunnels: (await store.loadTunnels(endpointId)).map(tunnelContextFromStore) });
    await waitFor('the baseline written through', async () => sameCounters((await store.loadTunnels(endpointId))[0]!.state?.counters, COUNTERS));

    master.addTraffic(id, { tcprx: 10_000 });
    master.checkpoint(id);
    await waitFor('the first life to count it', () => life1.tunnel(endpointId, id)!.traffic.tcprx === 10_000);
    await persister1.settle();
    life1.fleet.stop(); // the crash: the state queue (10,000 B counted) is never written

    master.addTraffic(id, { tcprx: 20_000, udptx: 3 });
    master.checkpoint(id);
    const persister2 = new Persister(store, new Stats(), Date.now, settings);
    const life2 = new Runtime({ persister: persister2, supervisors: DEFAULT_SUPERVISORS(settings) });
    life2.start();
    cleanups.push(() => life2.stop().catch(() => {}));
    life2.addEndpoint(def, { tunnels: (await store.loadTunnels(endpointId)).map(tunnelContextFromStore) });
    await waitFor('the second life to see the gap', () => sameCounters(life2.tunnel(endpointId, id)?.counters, countersOf(master.instance(id)!)));
    await persister2.drain();

    const truth = minus(countersOf(master.instance(id)!), COUNTERS);
    expect(truth).toEqual({ tcprx: 30_000, tcptx: 0, udprx: 0, udptx: 3 });
    expect(countersOf(life2.tunnel(endpointId, id)!.traffic)).toEqual(truth);
    expect((await store.loadTunnels(endpointId))[0]!.state!.traffic).toEqual(truth);
  });
});

describe('the baseline carried by a configuration record', () => {
  it('is written with the configuration in one statement, and never overwrites a state of the same moment or later', async () => {
    await testDb.reset();
    const endpointId = await createEndpointRow(testDb.sql, 'baseline-guard');
    const store = new Store(testDb.db);
    const baseline = (at: number, tcprx: number) => stateRecord(endpointId, 'aaaa0001', at, { counters: counters(tcprx), traffic: counters(0), resume: { track: { last: counters(tcprx) } } });

    // Creation: one statement writes the configuration and the state columns.
    expect(await store.writeTunnelConfigs([{ ...configRecord(endpointId, 'aaaa0001', T0), baseline: baseline(T0, 1_000) }])).toEqual({ statements: 1, rows: 1 });
    let [row] = await store.loadTunnels(endpointId);
    expect(row!.config!.at).toBe(T0);
    expect(row!.state).toMatchObject({ at: T0, counters: counters(1_000), traffic: counters(0) });

    // The state flusher checkpoints the same moment with traffic (two events at one time), then later.
    await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0, { counters: counters(1_500), traffic: counters(500) })], []);
    // A retried creation record (same time) leaves the flushed state alone.
    expect((await store.writeTunnelConfigs([{ ...configRecord(endpointId, 'aaaa0001', T0), baseline: baseline(T0, 1_000) }])).rows).toBe(1);
    [row] = await store.loadTunnels(endpointId);
    expect(row!.state).toMatchObject({ at: T0, counters: counters(1_500), traffic: counters(500) });

    await store.flushTunnelStates([stateRecord(endpointId, 'aaaa0001', T0 + 10, { counters: counters(2_000), traffic: counters(1_000) })], []);
    // A late configuration change (newer config, older baseline): the configuration moves, the state does not.
    await store.writeTunnelConfigs([{ ...configRecord(endpointId, 'aaaa0001', T0 + 5, { alias: 'renamed' }), baseline: baseline(T0 + 5, 1_200) }]);
    [row] = await store.loadTunnels(endpointId);
    expect(row!.config).toMatchObject({ at: T0 + 5, alias: 'renamed' });
    expect(row!.state).toMatchObject({ at: T0 + 10, counters: counters(2_000), traffic: counters(1_000) });

    // An old configuration with a newer baseline (configuration guard fails, state guard passes): state only.
    await store.writeTunnelConfigs([{ ...configRecord(endpointId, 'aaaa0001', T0, { alias: 'stale' }), baseline: baseline(T0 + 20, 2_000) }]);
    [row] = await store.loadTunnels(endpointId);
    expect(row!.config).toMatchObject({ at: T0 + 5, alias: 'renamed' });
    expect(row!.state).toMatchObject({ at: T0 + 20, counters: counters(2_000) });

    // A configuration without a baseline leaves the state columns as they are.
    await store.writeTunnelConfigs([configRecord(endpointId, 'aaaa0001', T0 + 30, { alias: 'later' })]);
    [row] = await store.loadTunnels(endpointId);
    expect(row!.config).toMatchObject({ at: T0 + 30, alias: 'later' });
    expect(row!.state).toMatchObject({ at: T0 + 20, counters: counters(2_000) });

    // In one batch, the creation (with its baseline) and a later change (without): both land.
    await store.writeTunnelConfigs([
      { ...configRecord(endpointId, 'bbbb0002', T0), baseline: { ...baseline(T0, 77), instanceId: 'bbbb0002' } },
      configRecord(endpointId, 'bbbb0002', T0 + 1, { alias: 'changed' }),
    ]);
    const second = (await store.loadTunnels(endpointId)).find((t) => t.instanceId === 'bbbb0002')!;
    expect(second.config).toMatchObject({ at: T0 + 1, alias: 'changed' });
    expect(second.state).toMatchObject({ at: T0, counters: counters(77), traffic: counters(0) });
  });
});
