/** The simulated REST API: auth, errors, CORS and the instance endpoints, with the real master's bodies (PROTOCOL §2, §3). */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type HostedMaster, type SimulatorHandle } from '../../src/sim/simulator.js';
import { instanceEvents, openStream, rest } from '../support/sim-client.js';

let sim: SimulatorHandle;
let master: HostedMaster;
beforeAll(async () => {
  sim = await startSimulator({ instances: 2, reportIntervalMs: 0, logLevel: 'debug', seed: 'rest', lifecycleLogs: false });
  master = sim.master;
});
afterAll(() => sim.close());

const api = (path: string) => `${master.apiBase}${path}`;

describe('authentication', () => {
  it.each(['/instances', '/events', '/info', `/instances/********`])('%s: 401 with the exact bodies', async (path) => {
    const missing = await rest('GET', api(path));
    expect(missing.status).toBe(401);
    expect(missing.text).toBe('{"error":"Unauthorized: API key required"}\n');
    expect(missing.headers['content-type']).toBe('application/json');
    const wrong = await rest('GET', api(path), { apiKey: 'wrong-key' });
    expect(wrong.status).toBe(401);
    expect(wrong.text).toBe('{"error":"Unauthorized: Invalid API key"}\n');
  });

  it('answers OPTIONS without a key, and puts CORS headers on everything', async () => {
    const options = await rest('OPTIONS', api('/instances'));
    expect(options.status).toBe(200);
    for (const res of [options, await rest('GET', api('/instances'))]) {
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['access-control-allow-methods']).toBe('GET, PATCH, POST, PUT, DELETE, OPTIONS');
      expect(res.headers['access-control-allow-headers']).toBe('Content-Type, Authorization, X-API-Key, Cache-Control');
    }
  });
});

describe('errors', () => {
  it('unknown paths get Go\'s plain-text 404, even with a key', async () => {
    for (const path of [`${sim.origin}/nope`, api('/nope'), `${sim.origin}/api`]) {
      const res = await rest('GET', path, { apiKey: master.apiKey });
      expect(res.status).toBe(404);
      expect(res.text).toBe('404 page not found\n');
      expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    }
  });

  it('wrong methods get 405, unknown instances 404, bad input 400/409, the key record 403', async () => {
    const key = { apiKey: master.apiKey };
    const cases: Array<[string, string, unknown, number, string]> = [
      ['DELETE', '/instances', undefined, 405, '{"error":"Method not allowed"}'],
      ['POST', '/events', undefined, 405, '{"error":"Method not allowed"}'],
      ['PUT', '/info', undefined, 405, '{"error":"Method not allowed"}'],
      ['GET', '/instances/ffffffff', undefined, 404, '{"error":"Instance not found"}'],
      ['GET', '/instances/', undefined, 400, '{"error":"Instance ID is required"}'],
      ['POST', '/instances', 'not json', 400, '{"error":"Invalid request body"}'],
      ['POST', '/instances', { url: 'http://127.0.0.1:1/x' }, 400, '{"error":"Invalid URL scheme"}'],
      ['PATCH', `/instances/${master.instanceIds()[0]}`, { action: 'bogus' }, 400, '{"error":"Invalid action: bogus"}'],
      ['DELETE', '/instances/********', undefined, 403, '{"error":"Forbidden: API Key"}'],
      ['GET', '/tcping', undefined, 400, '{"error":"Target address required"}'],
    ];
    for (const [method, path, body, status, text] of cases) {
      const res = await rest(method, api(path), { ...key, body });
      expect({ method, path, status: res.status, text: res.text }).toEqual({ method, path, status, text: `${text}\n` });
    }
  });
});

describe('instances', () => {
  it('GET /instances lists every instance and the API-key record', async () => {
    const list = (await rest('GET', api('/instances'), { apiKey: master.apiKey })).json<Array<{ id: string; url: string }>>();
    expect(list.map((i) => i.id).sort()).toEqual([...master.instanceIds(), '********'].sort());
    expect(list.find((i) => i.id === '********')!.url).toBe(master.apiKey);
  });

  it('POST answers 201 with a stopped instance, then streams create and update(running)', async () => {
    const stream = await openStream(master.apiBase, master.apiKey);
    const res = await rest('POST', api('/instances'), {
      apiKey: master.apiKey,
      body: { alias: 'np-server', url: 'server://127.0.0.1:19100/127.0.0.1:19200?mode=1&max=16' },
    });
    expect(res.status).toBe(201);
    const created = res.json<{ id: string; status: string; url: string; restart: boolean }>();
    expect(created).toMatchObject({ status: 'stopped', restart: true, url: 'server://127.0.0.1:19100/127.0.0.1:19200?log=debug&max=16&mode=1' });
    expect(created.id).toMatch(/^[0-9a-f]{8}$/);
    await stream.waitFor('create + running', () => instanceEvents(stream, 'update', created.id).length === 1);
    const sequence = instanceEvents(stream, undefined, created.id).map((e) => `${e.type}:${e.instance.status}`);
    expect(sequence).toEqual(['create:stopped', 'update:running']);
    stream.close();
  });

  it('PATCH applies alias, restart policy and meta with one update each; `peer: {}` clears the peer', async () => {
    const id = master.instanceIds()[1]!;
    const stream = await openStream(master.apiBase, master.apiKey);
    const body = { alias: 'renamed', restart: false, meta: { peer: { sid: 's-1', type: '2', alias: 'peer-x' }, tags: { env: 'test' } } };
    const res = await rest('PATCH', api(`/instances/${id}`), { apiKey: master.apiKey, body });
    expect(res.json()).toMatchObject(body);
    await stream.waitFor('three updates', () => instanceEvents(stream, 'update', id).length === 3);
    await rest('PATCH', api(`/instances/${id}`), { apiKey: master.apiKey, body: { meta: { peer: {} } } });
    await stream.waitFor('the meta update', () => instanceEvents(stream, 'update', id).length === 4);
    expect(instanceEvents(stream, 'update', id)[3]!.instance.meta).toEqual({ peer: { sid: '', type: '', alias: '' }, tags: { env: 'test' } });
    // Not JSON: nothing happens, 200 with the instance.
    const junk = await rest('PATCH', api(`/instances/${id}`), { apiKey: master.apiKey, body: '{oops' });
    expect(junk.status).toBe(200);
    stream.close();
  });

  it('PUT restarts with the new URL (409 when unchanged); DELETE answers 204 and streams update(stopped) + delete', async () => {
    const id = master.instanceIds()[0]!;
    const stream = await openStream(master.apiBase, master.apiKey);
    const url = 'server://127.0.0.1:19101/127.0.0.1:19999?mode=1';
    const put = await rest('PUT', api(`/instances/${id}`), { apiKey: master.apiKey, body: { url } });
    expect(put.status).toBe(200);
    expect(put.json()).toMatchObject({ status: 'stopped', url: 'server://127.0.0.1:19101/127.0.0.1:19999?log=debug&mode=1' });
    expect((await rest('PUT', api(`/instances/${id}`), { apiKey: master.apiKey, body: { url } })).status).toBe(409);
    await stream.waitFor('running again', () => instanceEvents(stream, 'update', id).some((e) => e.instance.status === 'running'));

    const del = await rest('DELETE', api(`/instances/${id}`), { apiKey: master.apiKey });
    expect(del.status).toBe(204);
    expect(del.text).toBe('');
    await stream.waitFor('the delete', () => instanceEvents(stream, 'delete', id).length === 1);
    const tail = instanceEvents(stream, undefined, id).slice(-2).map((e) => `${e.type}:${e.instance.status}`);
    expect(tail).toEqual(['update:stopped', 'delete:stopped']);
    expect((await rest('GET', api(`/instances/${id}`), { apiKey: master.apiKey })).status).toBe(404);
    stream.close();
  });

  it('/tcping dials for real and answers in the master\'s shape', async () => {
    const target = `127.0.0.1:${sim.port}`;
    const ok = await rest('GET', api(`/tcping?target=${target}`), { apiKey: master.apiKey });
    expect(ok.json()).toMatchObject({ target, connected: true, error: null });
    const refused = await rest('GET', api('/tcping?target=127.0.0.1:1'), { apiKey: master.apiKey });
    expect(refused.text).toBe('{"target":"127.0.0.1:1","connected":false,"latency":0,"error":"dial tcp 127.0.0.1:1: connect: connection refused"}\n');
  });

  it('/info is the flat object of §3.6, with `mid` empty on the first run', async () => {
    const info = (await rest('GET', api('/info'), { apiKey: master.apiKey })).json<Record<string, unknown>>();
    expect(Object.keys(info)).toEqual([
      'alias', 'arch', 'cpu', 'crt', 'diskr', 'diskw', 'key', 'log', 'mem_total', 'mem_used', 'mid', 'name',
      'netrx', 'nettx', 'os', 'swap_total', 'swap_used', 'sysup', 'tls', 'uptime', 'ver',
    ]);
    expect(info).toMatchObject({ mid: '', log: 'debug', tls: '0', name: '127.0.0.1' });
    expect(typeof info['uptime']).toBe('number');
    const renamed = (await rest('POST', api('/info'), { apiKey: master.apiKey, body: { alias: 'test-master' } })).json();
    expect(renamed).toMatchObject({ alias: 'test-master' });
  });
});

describe('against the real master\'s REST transcript (fixtures/captures/nodepass-s1-rest-transcript.txt)', () => {
  const transcript = readFileSync(new URL('../../fixtures/captures/nodepass-s1-rest-transcript.txt', import.meta.url), 'utf8').split('\n');
  /** The body line that follows the last request line matching `request`. */
  const bodyAfter = (request: RegExp): unknown => {
    const at = transcript.findLastIndex((line) => request.test(line));
    return JSON.parse(transcript[at + 1]!);
  };
  /** Every key path in document order with the JSON type of its value: the shape, not the values. */
  const shape = (value: unknown, prefix = ''): string[] => {
    if (typeof value !== 'object' || value === null) return [`${prefix}:${value === null ? 'null' : typeof value}`];
    if (Array.isArray(value)) return [`${prefix}:array`];
    if (Object.keys(value).length === 0) return [`${prefix}:object`];
    return Object.entries(value).flatMap(([k, v]) => (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length > 0 ? shape(v, `${prefix}${k}.`) : shape(v, `${prefix}${k}`)));
  };

  it('GET /instances: a bare array whose records have the real key order and value types, API-key record included', async () => {
    const real = bodyAfter(/^>>> \S+ GET \/api\/v1\/instances\s*$/) as Array<{ id: string }>;
    const ours = (await rest('GET', api('/instances'), { apiKey: master.apiKey })).json<Array<{ id: string }>>();
    const pick = (list: Array<{ id: string }>, key: boolean) => list.find((r) => (r.id === '********') === key)!;
    expect(shape(pick(ours, false))).toEqual(shape(pick(real, false)));
    expect(shape(pick(ours, true))).toEqual(shape(pick(real, true)));
  });

  it('GET /info: the real key order and value types', async () => {
    const real = bodyAfter(/^>>> \S+ GET \/api\/v1\/info\s*$/);
    const ours = (await rest('GET', api('/info'), { apiKey: master.apiKey })).json();
    expect(shape(ours)).toEqual(shape(real));
  });
});
