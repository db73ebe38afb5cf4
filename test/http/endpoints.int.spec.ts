/**
 * The endpoint registry routes through `app.inject`, on a real Runtime and database, against a real simulator:
 * create / read / change / enable / disable / reconnect / remove, the error shape, and security (token, CORS,
 * rate limit, the API key never leaving the service).
 */
import Fastify from 'fastify';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { app } from '../../src/http/app.js';
import { startSimulator, type SimulatorHandle } from '../../src/sim/simulator.js';
import { useTestDatabase } from '../support/database.js';
import { startHarness, until, type Harness } from './harness.js';

const testDb = useTestDatabase();
let sim: SimulatorHandle;
let h: Harness;

beforeAll(async () => {
  sim = await startSimulator({ seed: 'http-endpoints', instances: 2, reportIntervalMs: 0, apiKey: 'feedfacefeedfacefeedfacefeedface' });
});
afterAll(async () => {
  await sim.close();
});
beforeEach(async () => {
  await testDb.reset();
  h = await startHarness(testDb);
});
afterEach(async () => {
  await h.close();
});

const json = <T = any>(res: { body: string }): T => JSON.parse(res.body) as T;

async function createSimEndpoint(name = 'lab') {
  const res = await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name, url: sim.master.url, apiKey: sim.master.apiKey } });
  expect(res.statusCode).toBe(201);
  return json(res);
}

describe('endpoint registry routes', () => {
  it('creates an endpoint, normalises its URL, connects, and shows the real-time view', async () => {
    const created = await createSimEndpoint();
    expect(created).toMatchObject({ id: 1, name: 'lab', url: `${sim.master.url}/v1`, enabled: true, insecureTls: false });
    expect(created).not.toHaveProperty('apiKey');

    const live = await until('the endpoint is live with its tunnels', async () => {
      const v = json((await h.http.inject("/api/endpoints/1")));
      return v.stateName.startsWith('enabled.online.live') && v.tunnels.total === 2 ? v : undefined;
    });
    expect(live.connected).toBe(true);
    expect(live.connections).toBe(1);
    expect(live.since).toMatch(/^\d{4}-/);
    expect(live.master.id).toBe(sim.master.masterId);
    expect(live.tunnels).toMatchObject({ total: 2, deleted: 0 });
    expect(live.tunnels.running + live.tunnels.stopped + live.tunnels.error + live.tunnels.pending).toBe(2);
    expect(live.events.total).toBeGreaterThanOrEqual(2);
    expect(live.lag.lastEventAt).not.toBeNull();

    const list = json(await h.http.inject('/api/endpoints'));
    expect(list.map((e: { id: number }) => e.id)).toEqual([1]);
  });

  it('answers 409 CONFLICT for a taken name, 400 for a bad URL or body, 404 for an unknown id', async () => {
    await createSimEndpoint();
    const taken = await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'lab', url: 'http://10.1.1.1:9090', apiKey: 'k' } });
    expect(taken.statusCode).toBe(409);
    expect(json(taken).error.code).toBe('CONFLICT');

    const badUrl = await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'x', url: 'ftp://h/api', apiKey: 'k' } });
    expect(badUrl.statusCode).toBe(400);
    expect(json(badUrl)).toEqual({ error: { code: 'BAD_REQUEST', message: expect.stringContaining('http or https') } });

    const keyInUrl = await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'x', url: 'http://h/api?key=secret123', apiKey: 'k' } });
    expect(keyInUrl.statusCode).toBe(400);
    expect(keyInUrl.body).not.toContain('secret123');

    const missing = await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'x' } });
    expect(missing.statusCode).toBe(400);
    expect(json(missing).error.code).toBe('BAD_REQUEST');

    for (const url of ['/api/endpoints/99', '/api/endpoints/99/tunnels', '/api/endpoints/1/tunnels/nope']) {
      const res = await h.http.inject(url);
      expect(res.statusCode, url).toBe(404);
      expect(json(res).error.code).toBe('NOT_FOUND');
    }
    const notNumeric = await h.http.inject('/api/endpoints/abc');
    expect(notNumeric.statusCode).toBe(400);
    const noRoute = await h.http.inject('/api/nothing-here');
    expect(json(noRoute)).toEqual({ error: { code: 'NOT_FOUND', message: 'no route GET /api/nothing-here' } });
    // Nothing was half-created by the failures.
    expect(await h.repo.list()).toHaveLength(1);
  });

  it('renames, disables, enables, reconnects and removes', async () => {
    await createSimEndpoint();
    await until('live', async () => json(await h.http.inject('/api/endpoints/1')).connected);

    const renamed = await h.http.inject({ method: 'PATCH', url: '/api/endpoints/1', payload: { name: 'lab-2' } });
    expect(renamed.statusCode).toBe(200);
    expect(json(renamed).name).toBe('lab-2');
    expect((await h.repo.get(1))?.name).toBe('lab-2');
    const other = await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'other', url: 'http://127.0.0.1:9/api', apiKey: 'k', enabled: false } });
    const clash = await h.http.inject({ method: 'PATCH', url: `/api/endpoints/${json(other).id}`, payload: { name: 'lab-2' } });
    expect(clash.statusCode).toBe(409);
    expect(json(clash).error.code).toBe('CONFLICT');
    expect((await h.http.inject({ method: 'PATCH', url: '/api/endpoints/1', payload: {} })).statusCode).toBe(400);

    const disabled = json(await h.http.inject({ method: 'POST', url: '/api/endpoints/1/disable' }));
    expect(disabled).toMatchObject({ enabled: false, stateName: 'disabled', connected: false });
    expect((await h.repo.get(1))?.enabled).toBe(false);
    await until('the simulator sees the stream closed', () => sim.master.stats().connections === 0);

    const enabled = json(await h.http.inject({ method: 'POST', url: '/api/endpoints/1/enable' }));
    expect(enabled.enabled).toBe(true);
    await until('connected again', async () => json(await h.http.inject('/api/endpoints/1')).connections === 2);

    const reconnect = await h.http.inject({ method: 'POST', url: '/api/endpoints/1/reconnect' });
    expect(reconnect.statusCode).toBe(200);
    const after = await until('a third connection', async () => {
      const v = json(await h.http.inject('/api/endpoints/1'));
      return v.connections === 3 && v.connected ? v : undefined;
    });
    expect(after.reconnects).toBe(2);

    const viaPatch = json(await h.http.inject({ method: 'PATCH', url: '/api/endpoints/1', payload: { enabled: false } }));
    expect(viaPatch.enabled).toBe(false);

    // Rows the endpoint owns exist before removal and are gone after it.
    await h.persister.drain();
    expect((await testDb.sql`SELECT count(*)::int AS n FROM tunnels WHERE endpoint_id = 1`)[0]!["n"]).toBe(2);
    const removed = await h.http.inject({ method: 'DELETE', url: '/api/endpoints/1' });
    expect(removed.statusCode).toBe(204);
    expect(removed.body).toBe('');
    expect((await h.http.inject('/api/endpoints/1')).statusCode).toBe(404);
    expect(h.runtime.endpointRef(1)).toBeUndefined();
    expect((await testDb.sql`SELECT count(*)::int AS n FROM tunnels WHERE endpoint_id = 1`)[0]!['n']).toBe(0);
    expect((await h.http.inject({ method: 'DELETE', url: '/api/endpoints/1' })).statusCode).toBe(404);
  });

  it('a changed API key reconnects with the new key (and leaves authFailed)', async () => {
    const created = await h.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name: 'lab', url: sim.master.url, apiKey: 'wrong-key' } });
    expect(created.statusCode).toBe(201);
    await until('authFailed', async () => json(await h.http.inject('/api/endpoints/1')).stateName === 'enabled.authFailed');
    const fixed = await h.http.inject({ method: 'PATCH', url: '/api/endpoints/1', payload: { apiKey: sim.master.apiKey } });
    expect(fixed.statusCode).toBe(200);
    await until('connected with the new key', async () => json(await h.http.inject('/api/endpoints/1')).connected);
  });
});

describe('security', () => {
  it('the API key, and a tunnel key in an instance URL, appear in no response body of any route', async () => {
    const key = sim.master.apiKey;
    const tunnelKey = 'tunnelkey0123456789';
    const keyed = sim.master.createInstance({ url: `server://${tunnelKey}@:10101/127.0.0.1:8080` });
    await createSimEndpoint();
    await until('tunnels', async () => json(await h.http.inject('/api/endpoints/1')).tunnels.total === 3);
    sim.master.emitLogs(keyed.id, [`Server started: server://${tunnelKey}@:10101/127.0.0.1:8080`]);
    await until('the log line', () => (h.runtime.tunnel(1, keyed.id)?.logLines ?? 0) > 0 || undefined);
    await h.persister.drain();
    const tunnel = keyed.id;
    const urls = [
      '/api/endpoints', '/api/endpoints/1', '/api/endpoints/1/tunnels', `/api/endpoints/1/tunnels/${tunnel}`,
      `/api/endpoints/1/tunnels/${tunnel}/traffic`, `/api/endpoints/1/tunnels/${tunnel}/logs`, '/api/endpoints/1/logs', '/api/endpoints/1/traffic',
      '/api/traffic', '/api/dashboard', '/api/stats', '/api/stats/queues', '/api/stats/performance', '/api/actors',
      '/api/actors/fleet', '/api/actors/endpoint%3A1', `/api/actors/${encodeURIComponent(`tunnel:1/${tunnel}`)}`,
      '/api/actors/configWriter', '/metrics', '/healthz', '/readyz', '/docs/json', '/docs',
    ];
    for (const url of urls) {
      const res = await h.http.inject(url);
      expect(res.statusCode, url).toBeLessThan(400);
      expect(res.body, url).not.toContain(key);
      expect(res.body, url).not.toContain(tunnelKey);
    }
    expect(json(await h.http.inject(`/api/endpoints/1/tunnels/${tunnel}`)).url).toMatch(/^server:\/\/\*\*\*@:10101\/127\.0\.0\.1:8080/);
    expect(json(await h.http.inject(`/api/endpoints/1/tunnels/${tunnel}/logs`)).items.map((i: any) => i.message).join('\n')).toContain('server://***@:10101');
    sim.master.deleteInstance(keyed.id);
    const mutations = [
      { method: 'PATCH' as const, url: '/api/endpoints/1', payload: { apiKey: key } },
      { method: 'POST' as const, url: '/api/endpoints/1/reconnect' },
      { method: 'POST' as const, url: '/api/endpoints', payload: { name: 'lab', url: sim.master.url, apiKey: key } },
      { method: 'POST' as const, url: '/api/endpoints', payload: { name: 'bad', url: 'nope', apiKey: key } },
    ];
    for (const m of mutations) {
      const res = await h.http.inject(m);
      expect(res.body, `${m.method} ${m.url}`).not.toContain(key);
    }
  });

  it('with a token: 401 without or with a wrong one, 200 with it; health checks stay open; ?token only for the feed', async () => {
    const token = 'an-access-token-of-some-length';
    const secured = await startHarness(testDb, { accessToken: token });
    try {
      const none = await secured.http.inject('/api/endpoints');
      expect(none.statusCode).toBe(401);
      expect(json(none).error.code).toBe('UNAUTHORIZED');
      expect(none.body).not.toContain(token);
      expect((await secured.http.inject({ url: '/api/endpoints', headers: { authorization: `Bearer ${token}x` } })).statusCode).toBe(401);
      expect((await secured.http.inject({ url: '/api/endpoints', headers: { authorization: token } })).statusCode).toBe(401);
      expect((await secured.http.inject({ url: '/api/endpoints', headers: { authorization: `Bearer ${token}` } })).statusCode).toBe(200);
      expect((await secured.http.inject('/metrics')).statusCode).toBe(401);
      expect((await secured.http.inject('/docs/json')).statusCode).toBe(401);
      expect((await secured.http.inject('/nothing')).statusCode).toBe(401);
      expect((await secured.http.inject('/healthz')).statusCode).toBe(200);
      expect((await secured.http.inject('/readyz')).statusCode).toBe(200);
      expect((await secured.http.inject(`/api/endpoints?token=${token}`)).statusCode).toBe(401);
      expect((await secured.http.inject('/api/events?token=wrong')).statusCode).toBe(401);
    } finally {
      await secured.close();
    }
  });

  it('CORS is off unless origins are configured', async () => {
    const plain = await h.http.inject({ url: '/api/endpoints', headers: { origin: 'https://dash.example' } });
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();

    const withCors = await startHarness(testDb, { corsOrigins: ['https://dash.example'] });
    try {
      const allowed = await withCors.http.inject({ url: '/api/endpoints', headers: { origin: 'https://dash.example' } });
      expect(allowed.headers['access-control-allow-origin']).toBe('https://dash.example');
      const other = await withCors.http.inject({ url: '/api/endpoints', headers: { origin: 'https://evil.example' } });
      expect(other.headers['access-control-allow-origin']).toBeUndefined();
      const preflight = await withCors.http.inject({
        method: 'OPTIONS',
        url: '/api/endpoints',
        headers: { origin: 'https://dash.example', 'access-control-request-method': 'POST' },
      });
      expect(preflight.statusCode).toBe(204);
    } finally {
      await withCors.close();
    }
  });

  it('rate-limits mutating routes, not reads', async () => {
    const limited = await startHarness(testDb, { rateLimit: { max: 2, timeWindowMs: 60_000 } });
    try {
      const post = (name: string) =>
        limited.http.inject({ method: 'POST', url: '/api/endpoints', payload: { name, url: 'http://127.0.0.1:9/api', apiKey: 'k', enabled: false } });
      expect((await post('a')).statusCode).toBe(201);
      expect((await post('b')).statusCode).toBe(201);
      const third = await post('c');
      expect(third.statusCode).toBe(429);
      expect(json(third).error.code).toBe('RATE_LIMITED');
      expect(await limited.repo.getByName('c')).toBeNull();
      for (let i = 0; i < 5; i++) expect((await limited.http.inject('/api/endpoints')).statusCode).toBe(200);
    } finally {
      await limited.close();
    }
  });

  it('an unexpected error is a 500 INTERNAL whose message is hidden', async () => {
    const server = Fastify({ logger: false });
    await server.register(app, { runtime: h.runtime, store: h.store, accessToken: null, readiness: async () => ({ database: true, actorsRestored: true }) });
    server.get('/boom', async () => {
      throw new Error('connection to 10.0.0.5 failed: password authentication failed');
    });
    const res = await server.inject('/boom');
    expect(res.statusCode).toBe(500);
    expect(json(res).error.code).toBe('INTERNAL');
    expect(res.body).not.toContain('password');
    await server.close();
  });
});
