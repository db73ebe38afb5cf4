/**
 * Live ingest at width and over TLS, over real sockets (real Runtime, Persister and registry on a real
 * database, the simulator as the masters): 100 endpoints at once from one simulator process, each matching its
 * master and its rows; an HTTPS master with a self-signed certificate is refused unless the endpoint says
 * `insecureTls`, and then streams.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

describe('100 endpoints at once', () => {
  it('connects to all of them, follows every master, and stores every tunnel', async () => {
    sim = await startSimulator({ masters: 100, instances: 2, reportIntervalMs: 0, seed: 'e2e-100' });
    ingest = await startIngest(testDb);
    const i = ingest;
    const started = Date.now();
    const endpoints: { master: HostedMaster; endpoint: { id: number } }[] = [];
    for (const master of sim.masters) endpoints.push({ master, endpoint: await i.add(master.name, master.url, master.apiKey) });
    await waitFor('100 streams live', () => endpoints.every(({ endpoint }) => i.stateOf(endpoint.id) === 'streaming'), 30_000);
    const connectMs = Date.now() - started;

    for (const master of sim.masters) {
      for (const id of master.instanceIds()) master.addTraffic(id, { tcprx: 1234, tcptx: 4321, udprx: 12, udptx: 21 });
      master.checkpoint();
    }
    await waitFor('every master matched', () => endpoints.every(({ master, endpoint }) => matchesMaster(i, endpoint.id, master)), 30_000);
    expect(sim.stats().connections).toBe(100);
    expect(endpoints.every(({ endpoint }) => i.runtime.endpointState(endpoint.id)!.context.connections === 1)).toBe(true);

    const expected = sumCounters(sim.masters.flatMap((m) => m.instanceIds().map((id) => m.instance(id)!)));
    await i.persister.drain();
    expect(await i.store.sumTunnelTraffic()).toEqual(expected);
    expect(await i.store.loadTunnels()).toHaveLength(200);
    // Recorded for the report: how long 100 endpoints took from registration to live (loopback, shared CPU).
    console.info(`100 endpoints live in ${connectMs} ms`);
  });
});

describe('HTTPS with a self-signed certificate', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  function selfSigned(): { key: Buffer; cert: Buffer } {
    dir = mkdtempSync(join(tmpdir(), 'tp-tls-'));
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    // ECDSA P-256, like the certificate NodePass makes for `tls=1` (PROTOCOL §1).
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1', '-days', '1', '-keyout', key, '-out', cert],
      { stdio: 'ignore' },
    );
    return { key: readFileSync(key), cert: readFileSync(cert) };
  }

  it('is refused (a TLS failure, backing off) unless the endpoint allows it, and streams once it does', async () => {
    sim = await startSimulator({ instances: 2, reportIntervalMs: 0, seed: 'e2e-tls', tls: selfSigned() });
    const master = sim.master;
    expect(master.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/api$/);
    ingest = await startIngest(testDb);
    const i = ingest;

    const strict = await i.add('strict', master.url, master.apiKey);
    await waitFor('a TLS failure', () => /tls/i.test(i.runtime.endpointState(strict.id)!.context.lastError ?? ''), 10_000);
    expect(i.stateOf(strict.id)).not.toBe('streaming');
    expect(i.runtime.tunnels(strict.id)).toHaveLength(0);

    const lax = await i.add('lax', master.url, master.apiKey, { insecureTls: true });
    await waitFor('the snapshot over TLS', () => i.stateOf(lax.id) === 'streaming' && matchesMaster(i, lax.id, master), 10_000);
    await waitFor('/info over TLS', () => i.runtime.endpointState(lax.id)!.context.info?.version === 'dev-sim');
    master.addTraffic(master.instanceIds()[0]!, { tcprx: 42 });
    master.checkpoint();
    await waitFor('an update over TLS', () => matchesMaster(i, lax.id, master));

    await i.registry.update(strict.id, { insecureTls: true });
    await waitFor('the strict endpoint, now allowed', () => i.stateOf(strict.id) === 'streaming' && matchesMaster(i, strict.id, master), 10_000);
  });
});
