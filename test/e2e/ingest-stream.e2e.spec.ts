/**
 * Live ingest end to end, over real sockets: the real Runtime, Persister and registry on a real database,
 * against the simulator. Connect, snapshot, updates and logs match the master and land in the database; a
 * garbage frame is counted and the stream carries on; an idle master stays connected; IPv6 loopback works.
 */
import os from 'node:os';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimulator, type HostedMaster, type SimulatorHandle } from '../../src/sim/simulator.js';
import { useTestDatabase } from '../support/database.js';
import { matchesMaster, startIngest, sumCounters, waitFor, type Ingest } from './support/ingest.js';

const testDb = useTestDatabase();
let sim: SimulatorHandle | undefined;
let ingest: Ingest | undefined;

beforeEach(async () => {
  await testDb.reset();
});
afterEach(async () => {
  await ingest?.stop();
  await sim?.close();
  ingest = undefined;
  sim = undefined;
});

describe('a live endpoint', () => {
  it('connects, takes the snapshot, follows updates and logs, and writes them to the database', async () => {
    sim = await startSimulator({ instances: 4, reportIntervalMs: 0, seed: 'e2e-stream', alias: 'lab-master' });
    const master = sim.master;
    ingest = await startIngest(testDb);
    const endpoint = await ingest.add('lab', master.url, master.apiKey);

    await waitFor('live', () => ingest!.stateOf(endpoint.id) === 'streaming');
    await waitFor('the snapshot', () => matchesMaster(ingest!, endpoint.id, master));
    await waitFor('/info', () => ingest!.runtime.endpointState(endpoint.id)?.context.info !== null);
    const ctx = ingest.runtime.endpointState(endpoint.id)!.context;
    expect(ctx.masterId).toBe(master.masterId);
    expect(ctx.info).toMatchObject({ version: 'dev-sim', alias: 'lab-master' });
    // The master facts are stored on the endpoint row (the first-run `mid` bug filled from the API-key record).
    await waitFor('master info stored', async () => (await ingest!.repo.get(endpoint.id))?.masterId === master.masterId);
    expect((await ingest.repo.get(endpoint.id))!.masterInfo).toMatchObject({ version: 'dev-sim', masterId: master.masterId });

    const ids = master.instanceIds();
    for (let round = 1; round <= 3; round++) {
      for (const [i, id] of ids.entries()) master.addTraffic(id, { tcprx: 1000 * round + i, tcptx: 2000 * round, udprx: 10 * round, udptx: 7 });
      master.checkpoint();
      for (const id of ids) master.emitLogs(id, 3);
      await waitFor(`round ${round} applied`, () => matchesMaster(ingest!, endpoint.id, master));
    }
    // The instances started at 0 (generated, never run before): everything they report was counted, once.
    const expected = sumCounters(ids.map((id) => master.instance(id)!));
    const tunnels = ingest.runtime.tunnels(endpoint.id);
    expect(sumCounters(tunnels.map((t) => t.traffic))).toEqual(expected);
    await waitFor('every log line', () => tunnels.length > 0 && ingest!.runtime.tunnels(endpoint.id).every((t) => t.logLines === 9));

    await ingest.persister.drain();
    expect(await ingest.store.sumTunnelTraffic({ endpointId: endpoint.id })).toEqual(expected);
    expect(await ingest.store.countLogs({ endpointId: endpoint.id })).toBe(ids.length * 9);
    const stored = await ingest.store.loadTunnels(endpoint.id);
    expect(stored.map((t) => [t.instanceId, t.state?.status]).sort()).toEqual(ids.map((id) => [id, master.instance(id)!.status]).sort());
    expect(ingest.runtime.endpointState(endpoint.id)!.context.events.rejected).toBe(0);
  });

  it('counts a garbage frame as a rejected event and carries on with the stream', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'e2e-garbage' });
    const master = sim.master;
    ingest = await startIngest(testDb);
    const endpoint = await ingest.add('lab', master.url, master.apiKey);
    await waitFor('the snapshot', () => ingest!.stateOf(endpoint.id) === 'streaming' && matchesMaster(ingest!, endpoint.id, master));

    for (const kind of ['not-json', 'wrong-shape', 'unknown-type', 'counter-overflow'] as const) master.injectGarbage(kind);
    const [id] = master.instanceIds();
    master.addTraffic(id!, { tcprx: 4096 });
    master.checkpoint();
    await waitFor('the update after the garbage', () => matchesMaster(ingest!, endpoint.id, master));

    const ctx = ingest.runtime.endpointState(endpoint.id)!.context;
    expect(ctx.events.rejected).toBe(4);
    expect(Object.values(ctx.events.rejectedReasons).reduce((a, b) => a + b, 0)).toBe(4);
    expect(ctx.connections).toBe(1); // the same stream carried on
    expect(ingest.stats.snapshot().rejectedEvents).toBe(4);
  });

  it('keeps an idle master connected: quiet streams are probed, the listing matches, nothing is replaced', async () => {
    // Running instances that never checkpoint (a server waiting for its client, PROTOCOL §5.5) and a stopped one:
    // the stream stays silent for good.
    sim = await startSimulator({ instances: 3, reportIntervalMs: 0, seed: 'e2e-idle' });
    const master = sim.master;
    master.stopInstance(master.instanceIds()[2]!);
    ingest = await startIngest(testDb); // probe after 1 s of silence
    const endpoint = await ingest.add('idle', master.url, master.apiKey);
    await waitFor('live', () => ingest!.stateOf(endpoint.id) === 'streaming');

    await waitFor('four probes', () => ingest!.runtime.endpointState(endpoint.id)!.context.liveness.probes >= 4, 15_000);
    const ctx = ingest.runtime.endpointState(endpoint.id)!.context;
    expect(ctx.liveness).toMatchObject({ probeFailures: 0, probeMismatches: 0, halfOpenReplaced: 0 });
    expect(ctx.connections).toBe(1);
    expect(ctx.disconnected).toBeNull();
    expect(ctx.offline).toEqual([]);
    expect(ingest.stateOf(endpoint.id)).toMatch(/^(streaming|probing)$/);
    expect(master.stats().connections).toBe(1);
  });
});

describe('a half-open stream (the master answers, the stream is dead)', () => {
  it('is kept while nothing changes, and replaced as soon as the master shows a change the stream did not carry', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'e2e-half-open' });
    const master = sim.master;
    ingest = await startIngest(testDb);
    const endpoint = await ingest.add('lab', master.url, master.apiKey);
    await waitFor('the snapshot', () => ingest!.stateOf(endpoint.id) === 'streaming' && matchesMaster(ingest!, endpoint.id, master));
    const context = () => ingest!.runtime.endpointState(endpoint.id)!.context;

    expect(master.halfOpenStreams()).toBe(1);
    // Nothing changes on the master: indistinguishable from a quiet healthy stream, and harmless — it stays.
    await waitFor('two probes', () => context().liveness.probes >= 2, 10_000);
    expect(context().connections).toBe(1);

    const [id] = master.instanceIds();
    // A copy: the tunnel's context is live, its counters updated in place.
    const before = { ...ingest.runtime.tunnel(endpoint.id, id!)!.counters };
    master.addTraffic(id!, { tcprx: 777, tcptx: 333 });
    master.checkpoint(); // an update the dead stream never delivers
    await waitFor('the stream replaced', () => context().liveness.halfOpenReplaced === 1 && context().connections === 2, 10_000);
    await waitFor('state caught up through the new snapshot', () => matchesMaster(ingest!, endpoint.id, master));
    expect(context().offline.at(-1)).toMatchObject({ reason: 'half-open' });
    expect(context().liveness.probeMismatches).toBeGreaterThanOrEqual(1);
    // The missed checkpoint's bytes arrive once, as one delta from the last counters the dead stream carried.
    const after = master.instance(id!)!;
    const traffic = ingest.runtime.tunnel(endpoint.id, id!)!.traffic;
    expect(after.tcprx - before.tcprx).toBeGreaterThanOrEqual(777);
    expect(traffic).toMatchObject({ tcprx: after.tcprx, tcptx: after.tcptx }); // generated instances start at 0
  });
});

describe('a stalled master (nothing answers, the sockets stay open)', () => {
  it('fails the probes, replaces the stream, and reconnects once the master answers again', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'e2e-stall' });
    const master = sim.master;
    ingest = await startIngest(testDb, undefined, { masterRequestTimeoutMs: 500 });
    const endpoint = await ingest.add('lab', master.url, master.apiKey);
    await waitFor('the snapshot', () => ingest!.stateOf(endpoint.id) === 'streaming' && matchesMaster(ingest!, endpoint.id, master));
    const context = () => ingest!.runtime.endpointState(endpoint.id)!.context;

    master.stall();
    await waitFor('two failed probes, the stream replaced', () => context().offline.length + (context().disconnected ? 1 : 0) >= 1, 15_000);
    expect(context().disconnected).toMatchObject({ reason: 'probe-failed' });
    expect(context().liveness.probeFailures).toBeGreaterThanOrEqual(2);
    expect(context().liveness.halfOpenReplaced).toBe(0); // no listing was ever seen: not the half-open rule

    const [id] = master.instanceIds();
    master.addTraffic(id!, { tcprx: 5_000 });
    master.unstall(); // the held connection attempt is answered
    master.checkpoint();
    await waitFor('reconnected and caught up', () => ingest!.stateOf(endpoint.id) === 'streaming' && context().connections >= 2 && matchesMaster(ingest!, endpoint.id, master), 15_000);
    expect(context().offline.at(-1)).toMatchObject({ reason: 'probe-failed' });
  });
});

const hasIpv6Loopback = Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6' && a.address === '::1'));

describe.skipIf(!hasIpv6Loopback)('IPv6', () => {
  it('streams from http://[::1]:port/api', async () => {
    sim = await startSimulator({ host: '::1', instances: 2, reportIntervalMs: 0, seed: 'e2e-ipv6' });
    const master = sim.master;
    expect(master.url).toMatch(/^http:\/\/\[::1\]:\d+\/api$/);
    ingest = await startIngest(testDb);
    const endpoint = await ingest.add('v6', master.url, master.apiKey);
    await waitFor('the snapshot over IPv6', () => ingest!.stateOf(endpoint.id) === 'streaming' && matchesMaster(ingest!, endpoint.id, master));
    master.addTraffic(master.instanceIds()[0]!, { udprx: 99 });
    master.checkpoint();
    await waitFor('an update over IPv6', () => matchesMaster(ingest!, endpoint.id, master));
    await waitFor('/info over IPv6', () => ingest!.runtime.endpointState(endpoint.id)?.context.info?.version === 'dev-sim');
  });
});
