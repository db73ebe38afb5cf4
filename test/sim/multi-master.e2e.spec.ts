/** Many masters on one server, each under its own prefix with its own key; and IPv6 loopback. */
import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { openStream, rest } from '../support/sim-client.js';

let sim: SimulatorHandle | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const hasIpv6Loopback = Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6' && a.address === '::1'));

describe('multi-master', () => {
  it('hosts 200 masters under /m<n>/api, each with its own key, id and instances', async () => {
    sim = await startSimulator({ masters: 200, instances: 2, reportIntervalMs: 0, seed: 'fleet' });
    expect(new Set(sim.masters.map((m) => m.apiKey)).size).toBe(200);
    expect(sim.get('m17').apiBase).toBe(`${sim.origin}/m17/api/v1`);

    const sample = [sim.get(0), sim.get('m2'), sim.get(199)];
    for (const master of sample) {
      const stream = await openStream(master.apiBase, master.apiKey);
      await stream.waitFor('snapshot', () => stream.events.length === 3);
      expect(stream.events.find((e) => e.kind === 'master')).toMatchObject({ masterId: master.masterId });
      const ids = stream.events.flatMap((e) => (e.kind === 'instance' ? [e.event.instance.id] : []));
      expect(ids.sort()).toEqual(master.instanceIds().sort());
      stream.close();
    }
    // One master's key means nothing to another.
    const crossed = await rest('GET', `${sim.get('m2').apiBase}/info`, { apiKey: sim.get('m1').apiKey });
    expect(crossed.status).toBe(401);
    // Faults stay on their master.
    sim.get('m1').setHttpFailure(500);
    expect((await rest('GET', `${sim.get('m1').apiBase}/info`, { apiKey: sim.get('m1').apiKey })).status).toBe(500);
    expect((await rest('GET', `${sim.get('m3').apiBase}/info`, { apiKey: sim.get('m3').apiKey })).status).toBe(200);
    // No master at the default prefix when there are several.
    expect((await rest('GET', `${sim.origin}/api/v1/info`, { apiKey: sim.get('m1').apiKey })).text).toBe('404 page not found\n');
    expect(sim.stats().masters).toHaveLength(200);
  });

  it('accepts explicit prefixes and keys', async () => {
    const apiKey = '0123456789abcdef0123456789abcdef';
    sim = await startSimulator({ masters: [{ prefix: '/admin', apiKey }, { name: 'edge', prefix: 'edge/api/' }], instances: 0, reportIntervalMs: 0 });
    expect(sim.get(0).apiBase).toBe(`${sim.origin}/admin/v1`);
    expect(sim.get('edge').apiBase).toBe(`${sim.origin}/edge/api/v1`);
    expect((await rest('GET', `${sim.origin}/admin/v1/instances`, { apiKey })).status).toBe(200);
  });
});

describe.skipIf(!hasIpv6Loopback)('IPv6', () => {
  it('serves on ::1', async () => {
    sim = await startSimulator({ host: '::1', instances: 1, reportIntervalMs: 0, seed: 'v6' });
    expect(sim.origin).toBe(`http://[::1]:${sim.port}`);
    const stream = await openStream(sim.master.apiBase, sim.master.apiKey);
    await stream.waitFor('snapshot', () => stream.events.length === 2);
    expect(stream.rejections).toEqual([]);
    expect((await rest('GET', `${sim.master.apiBase}/info`, { apiKey: sim.master.apiKey })).json()).toMatchObject({ name: '::1' });
  });
});
