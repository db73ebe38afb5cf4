/**
 * The whole path over real sockets: simulator → service (`startService`: database, runtime, registry, HTTP on a
 * listening port) → HTTP fetch. The tunnel views must agree with the simulator's own `GET /instances` and with a
 * replay of the journal the service recorded of the same stream.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/connection.js';
import { replayFiles } from '../../src/replay/replay.js';
import { startService, type Service } from '../../src/service/service.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { expectedTunnelView } from '../support/instances.js';

const TOKEN = 'e2e-access-token-0123456789';
let sim: SimulatorHandle;
let service: Service | null = null;
let dataDir: string;
const schema = `t_http_e2e_${randomBytes(4).toString('hex')}`;
const databaseUrl = process.env['TEST_DATABASE_URL'] ?? null;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tp-http-e2e-'));
  sim = await startSimulator({ seed: 'http-e2e', instances: 4, reportIntervalMs: 0, autoTraffic: false, logRate: 0 });
});
afterAll(async () => {
  await service?.stop();
  await sim.close();
  if (databaseUrl) {
    const db = await openDatabase({ url: databaseUrl });
    await db.sql.unsafe(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await db.close();
  }
  rmSync(dataDir, { recursive: true, force: true });
});

async function call(path: string, init: RequestInit = {}): Promise<any> {
  const res = await fetch(`${service!.address}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...init.headers } });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${res.status} ${text}`);
  return text === '' ? null : JSON.parse(text);
}

async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function masterInstances(): Promise<any[]> {
  const res = await fetch(`${sim.master.apiBase}/instances`, { headers: { 'X-API-Key': sim.master.apiKey } });
  return ((await res.json()) as any[]).filter((i) => i.id !== '********');
}

describe('simulator → service → HTTP', () => {
  it('serves tunnel views that agree with GET /instances and with a replay of the recorded stream', async () => {
    const journal = join(dataDir, 'journal.jsonl');
    const config = loadConfig({}, {
      databaseUrl,
      databaseSchema: databaseUrl ? schema : null,
      dataDir,
      host: '127.0.0.1',
      port: 0,
      accessToken: TOKEN,
      journalPath: journal,
      logLevel: 'silent',
      stateFlushMs: 200,
      logFlushMs: 200,
    });
    // Every log line the service writes, at debug level, to check that no secret is in any of them.
    const logLines: string[] = [];
    const sink = new Writable({ write(chunk, _encoding, done) { logLines.push(String(chunk)); done(); } });
    service = await startService(config, pino({ level: 'debug' }, sink));
    expect(service.address).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await fetch(`${service.address}/api/endpoints`)).status).toBe(401);
    expect(await (await fetch(`${service.address}/readyz`)).json()).toEqual({ status: 'ready', checks: { database: true, actorsRestored: true } });

    const created = await call('/api/endpoints', { method: 'POST', body: JSON.stringify({ name: 'sim', url: sim.master.url, apiKey: sim.master.apiKey }) });
    const id = created.id as number;
    const ids = sim.master.instanceIds();
    await until('every tunnel seen', async () => (await call(`/api/endpoints/${id}`)).tunnels.total === ids.length);

    // Changes on the master: traffic over two checkpoints, a stop, a delete, a few log lines.
    for (const inst of ids) sim.master.addTraffic(inst, { tcprx: 10_000, tcptx: 20_000, udprx: 300, udptx: 400 });
    sim.master.checkpoint();
    sim.master.addTraffic(ids[0]!, { tcprx: 5_000 });
    sim.master.checkpoint(ids[0]!);
    sim.master.stopInstance(ids[1]!);
    sim.master.deleteInstance(ids[3]!);
    sim.master.emitLogs(ids[0]!, ['hello from e2e', 'second line']);

    const listed = await until('the service agrees with GET /instances', async () => {
      const instances = await masterInstances();
      for (const inst of instances) {
        const view = await call(`/api/endpoints/${id}/tunnels/${inst.id}`);
        if (view.status !== inst.status || view.counters.tcprx !== inst.tcprx || view.counters.tcptx !== inst.tcptx) return undefined;
      }
      const deleted = await call(`/api/endpoints/${id}/tunnels/${ids[3]}`);
      return deleted.deleted ? instances : undefined;
    });
    expect(listed.map((i) => i.id).sort()).toEqual(ids.slice(0, 3).sort());
    for (const inst of listed) {
      const view = await call(`/api/endpoints/${id}/tunnels/${inst.id}`);
      expect(view).toMatchObject(expectedTunnelView(inst));
    }
    const views = (await call(`/api/endpoints/${id}/tunnels`)) as any[];
    expect(views.find((v) => v.instanceId === ids[0])!.traffic).toEqual({ tcprx: 15_000, tcptx: 20_000, udprx: 300, udptx: 400 });

    // Other routes answer over the socket too.
    const endpoint = await call(`/api/endpoints/${id}`);
    expect(endpoint).toMatchObject({ connected: true, tunnels: { total: 4, running: 2, stopped: 1, deleted: 1 } });
    expect((await call('/api/dashboard')).tunnels.byStatus).toEqual({ running: 2, stopped: 1, deleted: 1 });
    const traffic = await call(`/api/endpoints/${id}/tunnels/${ids[0]}/traffic?hours=2`);
    expect(traffic.points[1]).toMatchObject({ open: true, tcprx: 15_000 });
    await until('log lines stored', async () => (await call(`/api/endpoints/${id}/tunnels/${ids[0]}/logs`)).items.length >= 2);
    // The feed with the token in the query (as EventSource sends it): the token must not reach a log line.
    const feed = await fetch(`${service.address}/api/events?token=${TOKEN}`);
    expect(feed.status).toBe(200);
    await feed.body?.cancel();
    const metrics = await fetch(`${service.address}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(await metrics.text()).toContain('tunnelpulse_events_processed');

    // Stop (the journal is flushed), replay the recorded stream, compare tunnel by tunnel.
    const live = views.map(({ endpointId: _e, mode: _m, ping: _p, pool: _o, tcps: _t, udps: _u, rates: _r, updatedAt: _a, ...rest }) => rest);
    await service.stop();
    service = null;
    const report = replayFiles([journal]);
    expect(report.endpoints).toHaveLength(1);
    expect(report.endpoints[0]!.name).toBe('sim');
    expect(report.endpoints[0]!.tunnels).toEqual(live);

    expect(logLines.length).toBeGreaterThan(0);
    for (const line of logLines) {
      expect(line).not.toContain(sim.master.apiKey);
      expect(line).not.toContain(TOKEN);
    }
  });
});
