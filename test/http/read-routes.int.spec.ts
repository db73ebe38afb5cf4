/**
 * The read routes through `app.inject` on a real Runtime and database, fed by a real simulator over SSE:
 * tunnel views against the master's own `GET /instances`, hourly traffic (stored hours + the open hour from
 * memory), paged logs, the dashboard, the statistics, the raw actors, metrics and health.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOUR_MS, hourOf } from '../../actors/traffic.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { useTestDatabase } from '../support/database.js';
import { expectedTunnelView } from '../support/instances.js';
import { startHarness, until, type Harness } from './harness.js';

const testDb = useTestDatabase();
let sim: SimulatorHandle;
let h: Harness;
let ids: string[];

const json = <T = any>(res: { body: string }): T => JSON.parse(res.body) as T;
const get = async <T = any>(url: string): Promise<T> => {
  const res = await h.http.inject(url);
  expect(res.statusCode, `${url}: ${res.body.slice(0, 300)}`).toBe(200);
  return json<T>(res);
};

async function masterInstances(): Promise<any[]> {
  const res = await fetch(`${sim.master.apiBase}/instances`, { headers: { 'X-API-Key': sim.master.apiKey } });
  return ((await res.json()) as any[]).filter((i) => i.id !== '********');
}

beforeAll(async () => {
  await testDb.reset();
  sim = await startSimulator({ seed: 'http-reads', instances: 3, reportIntervalMs: 0, logRate: 0, autoTraffic: false });
  h = await startHarness(testDb);
  await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'sim', url: sim.master.url, apiKey: sim.master.apiKey } });
  ids = sim.master.instanceIds();
  await until('all tunnels seen', () => h.runtime.tunnels(1).filter((t) => t.status !== null).length === ids.length);
  // Traffic in two checkpoints (the first sample of a tunnel is its baseline), a stopped tunnel, and log lines.
  for (const id of ids) sim.master.addTraffic(id, { tcprx: 1000, tcptx: 2000, udprx: 30, udptx: 40 });
  sim.master.checkpoint();
  for (const id of ids) sim.master.addTraffic(id, { tcprx: 500, tcptx: 700 });
  sim.master.checkpoint();
  sim.master.stopInstance(ids[2]!);
  sim.master.emitLogs(ids[0]!, ['first line', 'second line', 'third line']);
  await until('the service caught up with the master', async () => {
    const listed = await masterInstances();
    return listed.every((i) => {
      const t = h.runtime.tunnel(1, i.id);
      return t && t.status === i.status && t.counters.tcprx === i.tcprx && t.counters.tcptx === i.tcptx;
    }) && h.runtime.tunnel(1, ids[0]!)!.logLines >= 3;
  });
});
afterAll(async () => {
  await h?.close();
  await sim?.close();
});

describe('tunnel views', () => {
  it('agree with the master’s GET /instances', async () => {
    const listed = await masterInstances();
    const tunnels = await get<any[]>('/api/endpoints/1/tunnels');
    expect(tunnels.map((t) => t.instanceId)).toEqual([...ids].sort());
    for (const inst of listed) {
      const view = await get(`/api/endpoints/1/tunnels/${inst.id}`);
      expect(view).toMatchObject({ endpointId: 1, ...expectedTunnelView(inst) });
      expect(Object.keys(view).sort()).toEqual(
        ['alias', 'counters', 'deleted', 'endpointId', 'instanceId', 'logLines', 'meta', 'mode', 'ping', 'pool', 'rates', 'status',
          'statusChanges', 'tcps', 'traffic', 'type', 'udps', 'updatedAt', 'url'].sort(),
      );
      expect(view.updatedAt).toMatch(/^\d{4}-\d\d-\d\dT/);
    }
    const stopped = await get(`/api/endpoints/1/tunnels/${ids[2]}`);
    expect(stopped.statusChanges.map((s: any) => s.status)).toEqual(['running', 'stopped']);
    // The initial snapshot (zero counters) is the baseline: both checkpoints count.
    const first = await get(`/api/endpoints/1/tunnels/${ids[0]}`);
    expect(first.traffic).toEqual({ tcprx: 1500, tcptx: 2700, udprx: 30, udptx: 40 });
    expect(first.logLines).toBe(3);
  });
});

describe('recent events (the in-memory ring per endpoint)', () => {
  it('lists the latest events newest first: the snapshot, the checkpoints, the stop and the log lines', async () => {
    const recent = await get('/api/endpoints/1/events?limit=1000');
    expect(recent.capacity).toBe(1000);
    expect(recent.items.length).toBe(recent.total);
    const times = recent.items.map((e: any) => Date.parse(e.receivedAt));
    expect([...times].sort((a, b) => b - a)).toEqual(times);
    const types = recent.items.map((e: any) => e.type);
    expect(recent.items.filter((e: any) => e.kind === 'instance' && e.type === 'initial')).toHaveLength(ids.length);
    expect(types).toContain('log');
    expect(recent.items.some((e: any) => e.instanceId === ids[2] && e.status === 'stopped')).toBe(true);
    expect(recent.items.filter((e: any) => e.kind === 'master')).toEqual([expect.objectContaining({ type: 'initial', instanceId: null })]);
    expect((await get('/api/endpoints/1/events?limit=2')).items).toEqual(recent.items.slice(0, 2));
    expect((await h.http.inject('/api/endpoints/9/events')).statusCode).toBe(404);
    expect((await h.http.inject('/api/endpoints/1/events?limit=0')).statusCode).toBe(400);
  });
});

describe('traffic', () => {
  it('has one point per hour, oldest first, the open hour from memory, stored hours from the database', async () => {
    const now = Date.now();
    const current = hourOf(now);
    // A past hour known only to the database.
    await h.store.flushTunnelStates([], [{ endpointId: 1, instanceId: ids[1]!, hour: current - 2 * HOUR_MS, traffic: { tcprx: 11, tcptx: 22, udprx: 0, udptx: 0 } }]);

    const tunnel = await get(`/api/endpoints/1/tunnels/${ids[1]}/traffic?hours=3`);
    expect(tunnel.hours).toBe(3);
    expect(tunnel.points.map((p: any) => p.hour)).toEqual([current - 2 * HOUR_MS, current - HOUR_MS, current].map((ms) => new Date(ms).toISOString()));
    expect(tunnel.points.map((p: any) => p.open)).toEqual([false, false, true]);
    expect(tunnel.points[0]).toMatchObject({ tcprx: 11, tcptx: 22, udprx: 0, udptx: 0 });
    expect(tunnel.points[2]).toMatchObject({ tcprx: 1500, tcptx: 2700, udprx: 30, udptx: 40 });

    // Before the state flusher has written anything of the open hour, memory answers alone; after, both agree.
    const endpoint = await get('/api/endpoints/1/traffic?hours=3');
    expect(endpoint.points[2]).toMatchObject({ tcprx: 4500, tcptx: 8100, udprx: 90, udptx: 120 });
    expect(endpoint.points[0]).toMatchObject({ tcprx: 11, tcptx: 22 });
    await h.persister.drain();
    expect((await get('/api/endpoints/1/traffic?hours=3')).points[2]).toMatchObject({ tcprx: 4500, tcptx: 8100 });
    const global = await get('/api/traffic');
    expect(global.hours).toBe(24);
    expect(global.points).toHaveLength(24);
    expect(global.points[23]).toMatchObject({ tcprx: 4500, tcptx: 8100, open: true });

    const bad = await h.http.inject('/api/traffic?hours=0');
    expect(bad.statusCode).toBe(400);
    expect(json(bad).error.code).toBe('BAD_REQUEST');
    expect((await h.http.inject(`/api/endpoints/1/tunnels/nope/traffic`)).statusCode).toBe(404);
  });
});

describe('logs', () => {
  it('pages newest first with a keyset cursor, filters by level and time', async () => {
    await h.persister.drain();
    const url = `/api/endpoints/1/tunnels/${ids[0]}/logs`;
    const all = await get(`${url}?limit=100`);
    const messages = all.items.map((i: any) => i.message);
    expect(messages.filter((m: string) => /first line|second line|third line/.test(m))).toHaveLength(3);
    expect(all.nextCursor).toBeNull();
    expect(Object.keys(all.items[0]).sort()).toEqual(['level', 'message', 'time']);
    const times = all.items.map((i: any) => Date.parse(i.time));
    expect([...times].sort((a, b) => b - a)).toEqual(times);

    const page1 = await get(`${url}?limit=2`);
    expect(page1.items).toHaveLength(2);
    expect(page1.nextCursor).toEqual(expect.any(String));
    const page2 = await get(`${url}?limit=2&cursor=${encodeURIComponent(page1.nextCursor)}`);
    expect([...page1.items, ...page2.items].map((i: any) => i.message)).toEqual(messages.slice(0, page1.items.length + page2.items.length));

    expect((await get(`${url}?level=info`)).items.length).toBe(all.items.filter((i: any) => i.level === 'info').length);
    expect((await get(`${url}?level=error`)).items).toEqual(all.items.filter((i: any) => i.level === 'error'));
    expect((await get(`${url}?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).items).toEqual([]);
    expect((await get(`${url}?until=0`)).items).toEqual([]);

    const endpointLogs = await get('/api/endpoints/1/logs?limit=1000');
    expect(endpointLogs.items.filter((i: any) => i.instanceId === ids[0]).map((i: any) => i.message)).toEqual(messages);
    expect((await h.http.inject('/api/endpoints/9/logs')).statusCode).toBe(404);

    expect(json(await h.http.inject(`${url}?since=yesterday`)).error.code).toBe('BAD_REQUEST');
    expect((await h.http.inject(`${url}?cursor=garbage`)).statusCode).toBe(400);
    expect((await h.http.inject(`${url}?limit=5000`)).statusCode).toBe(400);
  });
});

describe('dashboard, stats, actors, metrics, health', () => {
  it('dashboard aggregates', async () => {
    const d = await get('/api/dashboard');
    expect(d.endpoints).toMatchObject({ total: 1, connected: 1 });
    expect(Object.keys(d.endpoints.byState)[0]).toMatch(/^online\.live/);
    expect(d.tunnels).toEqual({ total: 3, byStatus: { running: 2, stopped: 1 } });
    expect(d.traffic.last24h).toEqual({ tcprx: 4511, tcptx: 8122, udprx: 90, udptx: 120 });
    expect(d.traffic.today.tcprx).toBeGreaterThanOrEqual(4500);
    expect(d.topTunnels.byTraffic.map((t: any) => t.trafficBytes)).toEqual([4270, 4270, 4270]);
  });

  it('statistics, queues and performance', async () => {
    const s = await get('/api/stats');
    expect(s.processedEvents).toBeGreaterThan(5);
    expect(s.hitRate).toBeGreaterThan(0.5);
    expect(s.endpoints).toBe(1);
    expect(s.tunnels).toBe(3);
    expect(s.liveFeed).toMatchObject({ subscribers: 0, slowClientsCut: 0 });
    const q = await get('/api/stats/queues');
    expect(Object.keys(q.queues).sort()).toEqual(['config', 'logs', 'state']);
    expect(q.pendingRows).toBeGreaterThanOrEqual(0);
    // The SSE input backlog (src/runtime/ingest-scheduler.ts): present, nothing processed inline at this load.
    expect(q.ingest).toMatchObject({ backlogBytes: expect.any(Number), inlineChunks: 0, discardedBytes: 0 });
    expect(q.ingest.slices).toBeGreaterThan(0);
    const p = await get('/api/stats/performance');
    expect(p).toMatchObject({ processedEvents: s.processedEvents, hitRate: s.hitRate, errorRate: 0 });
    expect(p.p99ProcessingUs).toBeGreaterThan(0);
    expect(p.eventsPerSecond).toBeGreaterThanOrEqual(0);
  });

  it('actors: every actor with kind and parent; any one with its context', async () => {
    const { actors } = await get('/api/actors');
    const byId = new Map(actors.map((a: any) => [a.id, a]));
    expect(byId.get('fleet')).toMatchObject({ kind: 'fleet', parent: null, status: 'active' });
    for (const name of ['configWriter', 'stateFlusher', 'logBatcher', 'hourlyRollup', 'retention']) {
      expect(byId.get(name), name).toMatchObject({ kind: 'supervisor', parent: 'fleet' });
    }
    expect(byId.get('endpoint:1')).toMatchObject({ kind: 'endpoint', parent: 'fleet', status: 'active' });
    for (const id of ids) expect(byId.get(`tunnel:1/${id}`)).toMatchObject({ kind: 'tunnel', parent: 'endpoint:1', status: 'active' });
    expect(byId.get(`tunnel:1/${ids[2]}`)).toMatchObject({ value: 'stopped' });

    const tunnel = await get(`/api/actors/${encodeURIComponent(`tunnel:1/${ids[0]}`)}`);
    expect(tunnel).toMatchObject({ id: `tunnel:1/${ids[0]}`, kind: 'tunnel', parent: 'endpoint:1', value: 'running', status: 'active' });
    expect(tunnel.context).toMatchObject({ endpointId: 1, instanceId: ids[0], traffic: { tcprx: 1500 } });
    const endpoint = await get('/api/actors/endpoint%3A1');
    expect(endpoint.context.tunnels[ids[0]!]).toBe(`tunnel:1/${ids[0]}`);
    const fleet = await get('/api/actors/fleet');
    expect(fleet.context.endpoints['1']).toBe('endpoint:1');
    expect((await get('/api/actors/stateFlusher')).kind).toBe('supervisor');
    for (const missing of ['endpoint%3A9', 'tunnel%3A1%2Fnope', 'nothing']) {
      const res = await h.http.inject(`/api/actors/${missing}`);
      expect(res.statusCode, missing).toBe(404);
      expect(json(res).error.code).toBe('NOT_FOUND');
    }
  });

  it('metrics, health, readiness, OpenAPI', async () => {
    const metrics = await h.http.inject('/metrics');
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    for (const name of ['tunnelpulse_events_processed', 'tunnelpulse_queue_depth{queue="logs"}', 'tunnelpulse_feed_slow_clients_cut', 'tunnelpulse_tunnels_by_status{status="stopped"} 1', 'tunnelpulse_memory_hit_rate']) {
      expect(metrics.body).toContain(name);
    }
    expect(await get('/healthz')).toMatchObject({ status: 'ok' });
    expect(await get('/readyz')).toEqual({ status: 'ready', checks: { database: true, actorsRestored: true } });
    const spec = await get('/docs/json');
    expect(spec.openapi).toMatch(/^3\./);
    for (const path of ['/api/endpoints', '/api/endpoints/{id}/tunnels/{instanceId}/logs', '/api/events', '/api/actors/{actorId}', '/metrics']) {
      expect(spec.paths[path], path).toBeDefined();
    }
    const ui = await h.http.inject('/docs');
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toContain('swagger-ui');
    // Served from the package, no CDN.
    expect(ui.body).not.toMatch(/src="https?:|href="https?:/);
    expect((await h.http.inject('/docs/static/swagger-ui-bundle.js')).statusCode).toBe(200);
  });

  it('readiness is 503 when the database is not reachable', async () => {
    const notReady = await startHarness(testDb, { readiness: async () => ({ database: false, actorsRestored: true }) });
    try {
      const res = await notReady.http.inject('/readyz');
      expect(res.statusCode).toBe(503);
      expect(json(res)).toEqual({ status: 'not-ready', checks: { database: false, actorsRestored: true } });
    } finally {
      await notReady.close();
    }
  });
});
