/**
 * Live ingest through master faults, over real sockets (real Runtime, Persister and registry on a real database,
 * the simulator as the master): a restart is followed by a reconnect within the backoff cap; a rotated key parks
 * the endpoint without hammering and a new key resumes it; traffic during a disconnected gap is counted once;
 * events lost upstream are repaired by the periodic `GET /instances` reconciliation on a busy stream.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimulator, type HostedMaster, type SimulatorHandle } from '../../src/sim/simulator.js';
import { useTestDatabase } from '../support/database.js';
import { FAST_ENDPOINT_SETTINGS, matchesMaster, startIngest, sumCounters, waitFor, type Ingest } from './support/ingest.js';

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

async function connected(master: HostedMaster, settings = FAST_ENDPOINT_SETTINGS) {
  ingest = await startIngest(testDb, settings);
  const endpoint = await ingest.add('lab', master.url, master.apiKey);
  const i = ingest;
  await waitFor('the snapshot', () => i.stateOf(endpoint.id) === 'streaming' && matchesMaster(i, endpoint.id, master));
  return { i, id: endpoint.id, context: () => i.runtime.endpointState(endpoint.id)!.context };
}

/** Moves traffic on every instance and checkpoints: the master's counters go up, an `update` each. */
function traffic(master: HostedMaster, bytes: number): void {
  for (const id of master.instanceIds()) master.addTraffic(id, { tcprx: bytes, tcptx: 2 * bytes, udprx: 3, udptx: 5 });
  master.checkpoint();
}

describe('master restart', () => {
  it('reconnects within the backoff cap once the master is back, with a new snapshot and one offline interval', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'e2e-restart' });
    const master = sim.master;
    const { i, id, context } = await connected(master);
    traffic(master, 1000);
    await waitFor('traffic', () => matchesMaster(i, id, master));

    await master.restartMaster({ downtimeMs: 2_000 }); // shutdown, 2 s of refused connections, up again
    const backAt = Date.now();
    await waitFor('reconnected', () => context().connections === 2 && i.stateOf(id) === 'streaming', 10_000);
    const reconnectMs = Date.now() - backAt;
    // The cap is 1 s here: the pending backoff ends within it, then the snapshot's quiet period (0.3 s).
    expect(reconnectMs).toBeLessThan(FAST_ENDPOINT_SETTINGS.backoffCapMs! + FAST_ENDPOINT_SETTINGS.snapshotQuietMs! + 1_000);
    expect(context().offline).toHaveLength(1);
    expect(context().offline[0]!.reason).toBe('shutdown');
    expect(context().offline[0]!.to! - context().offline[0]!.from).toBeGreaterThanOrEqual(1_900);
    expect(context().disconnected).toBeNull();
    await waitFor('state after the restart', () => matchesMaster(i, id, master));
    expect(sumCounters(i.runtime.tunnels(id).map((t) => t.traffic))).toEqual(sumCounters(master.instanceIds().map((x) => master.instance(x)!)));
  });
});

describe('key rotation', () => {
  it('parks the endpoint in authFailed without further requests; the new key resumes it and the gap is counted once', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'e2e-rotate' });
    const master = sim.master;
    const { i, id, context } = await connected(master);
    traffic(master, 500);
    await waitFor('traffic', () => matchesMaster(i, id, master));

    const newKey = master.rotateKey();
    await waitFor('authFailed', () => i.stateOf(id) === 'authFailed', 10_000);
    expect(context().lastError).toMatch(/auth/);
    const requestsParked = master.stats().requests;
    // The gap: traffic moves and checkpoints go to nobody while we are parked.
    for (let round = 0; round < 3; round++) traffic(master, 10_000 + round);
    await new Promise((resolve) => setTimeout(resolve, 3 * FAST_ENDPOINT_SETTINGS.backoffCapMs!));
    expect(master.stats().requests).toBe(requestsParked); // no hammering: not a single request while parked
    expect(i.stateOf(id)).toBe('authFailed');

    await i.registry.update(id, { apiKey: newKey });
    await waitFor('resumed with the new key', () => i.stateOf(id) === 'streaming' && matchesMaster(i, id, master), 10_000);
    // Every byte the master counted, before and during the gap, once: the gap arrives as one delta per tunnel.
    const expected = sumCounters(master.instanceIds().map((x) => master.instance(x)!));
    expect(sumCounters(i.runtime.tunnels(id).map((t) => t.traffic))).toEqual(expected);
    await i.persister.drain();
    expect(await i.store.sumTunnelTraffic({ endpointId: id })).toEqual(expected);
    expect(context().offline.map((o) => o.reason)).toEqual(['shutdown']);
  });
});

describe('a disconnected gap with the master running', () => {
  it('counts the traffic of the gap once, from the first snapshot after it', async () => {
    sim = await startSimulator({ instances: 4, reportIntervalMs: 0, seed: 'e2e-gap' });
    const master = sim.master;
    const { i, id, context } = await connected(master);
    traffic(master, 100);
    await waitFor('traffic', () => matchesMaster(i, id, master));

    master.setHttpFailure(503);
    master.dropConnections(); // a cut with no `shutdown`; every reconnect now gets 503
    await waitFor('disconnected', () => context().disconnected !== null);
    for (let round = 0; round < 5; round++) traffic(master, 7_000 + round);
    await waitFor('a few refused attempts', () => context().attempt >= 2, 10_000);
    master.setHttpFailure(null);

    await waitFor('back, caught up', () => i.stateOf(id) === 'streaming' && matchesMaster(i, id, master), 10_000);
    const expected = sumCounters(master.instanceIds().map((x) => master.instance(x)!));
    expect(sumCounters(i.runtime.tunnels(id).map((t) => t.traffic))).toEqual(expected);
    expect(context().offline).toHaveLength(1);
    await i.persister.drain();
    expect(await i.store.sumTunnelTraffic({ endpointId: id })).toEqual(expected);
  });
});

describe('events lost upstream on a busy stream', () => {
  it('are repaired by the periodic GET /instances reconciliation, without replacing the stream', async () => {
    sim = await startSimulator({ instances: 4, reportIntervalMs: 200, seed: 'e2e-lost' });
    const master = sim.master;
    const [a, b, c] = master.instanceIds() as [string, string, string, string];
    const { i, id, context } = await connected(master, { ...FAST_ENDPOINT_SETTINGS, reconcileIntervalMs: 1_500 });

    // Lost without notice: the stop of `a` (its goodbye log line + update), the create of a new instance, and the
    // delete of `b` (its update(stopped) + delete).
    master.loseEvents(2);
    master.stopInstance(a);
    master.loseEvents(1);
    const created = master.createInstance({ url: 'client://127.0.0.1:19999/127.0.0.1:29999?mode=1', alias: 'late', status: 'stopped' });
    master.loseEvents(2);
    master.deleteInstance(b);
    expect(master.stats().lost).toBe(5);

    await waitFor(
      'reconciled',
      () =>
        i.runtime.tunnel(id, a)?.status === 'stopped' &&
        i.runtime.tunnel(id, created.id)?.status === 'stopped' &&
        i.runtime.tunnel(id, b)?.deleted === true,
      10_000,
    );
    expect(context().connections).toBe(1); // a busy stream is never probed, let alone replaced
    expect(context().liveness.reconciliations).toBeGreaterThanOrEqual(1);
    expect(context().liveness.corrected).toBeGreaterThanOrEqual(2);
    expect(context().liveness.tombstoned).toBe(1);
    expect(context().liveness.halfOpenReplaced).toBe(0);
    expect(i.runtime.tunnel(id, c)!.status).toBe('running');
    await waitFor('everything else in step', () => matchesMaster(i, id, master), 5_000);
  });
});
