/**
 * `getInfo` and `listInstances` against loopback servers answering with NodePass's recorded responses.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  getInfo,
  listInstances,
  MasterAgentPool,
  MasterRequestError,
  type MasterRequestFailure,
} from '../../src/ingest/master-api.js';
import {
  neverRespond,
  readCapture,
  refusedPort,
  requireKey,
  respondJson,
  respondText,
  routes,
  selfSignedCertificate,
  startHttpServer,
  startSilentTcpServer,
  TEST_API_KEY,
  type Responder,
} from '../support/sse-server.js';

const transcript = readCapture('nodepass-s1-rest-transcript.txt');
/** The response body recorded after a `>>> … GET <path>` line of the REST transcript (the `n`-th such request). */
function recordedBody(path: string, n = 0): unknown {
  const lines = transcript.split('\n');
  const requests = lines.flatMap((line, i) => (line.startsWith('>>>') && line.includes(`GET ${path} `) ? [i] : []));
  return JSON.parse(lines[requests[n]! + 1]!);
}

const INFO_FIRST_RUN = recordedBody('/api/v1/info', 0) as Record<string, unknown>; // mid ""
const INFO_AFTER_RESTART = recordedBody('/api/v1/info', 1) as Record<string, unknown>;
const INSTANCES = recordedBody('/api/v1/instances', 3) as { id: string; url: string }[];
const S1_KEY = '1a040764b530633900dadf3b18cc8830';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function master(table: Record<string, Responder>, options?: Parameters<typeof startHttpServer>[1]) {
  const guarded = Object.fromEntries(Object.entries(table).map(([path, responder]) => [path, requireKey(TEST_API_KEY, responder)]));
  const server = await startHttpServer(routes(guarded), options);
  const agents = new MasterAgentPool();
  cleanups.push(() => server.close(), () => agents.destroy());
  return { server, agents };
}

async function failureOf(promise: Promise<unknown>): Promise<MasterRequestFailure> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(MasterRequestError);
  return (error as MasterRequestError).failure;
}

describe('getInfo', () => {
  it('maps /info to MasterInfo, keeping the raw fields', async () => {
    const { server, agents } = await master({ '/api/v1/info': respondJson(200, INFO_AFTER_RESTART) });
    const { info, raw } = await getInfo(server.baseUrl, TEST_API_KEY, { agents });
    expect(info).toEqual({
      masterId: '1ab781946d30b9c8',
      alias: 'test-master',
      version: 'dev-local',
      os: 'linux',
      arch: 'amd64',
      name: '127.0.0.1',
      uptime: 15,
      system: expect.objectContaining({ cpu: 5, mem_total: 25276502016, sysup: 567, log: 'debug', tls: '0' }),
    });
    expect(info.system).not.toHaveProperty('key');
    expect(raw).toEqual(INFO_AFTER_RESTART);
    expect(server.requests[0]).toMatchObject({ url: '/api/v1/info', headers: { 'x-api-key': TEST_API_KEY } });
  });

  it('accepts the first-run `mid: ""` (PROTOCOL §3.6) as an empty master id', async () => {
    expect(INFO_FIRST_RUN['mid']).toBe('');
    const { server, agents } = await master({ '/api/v1/info': respondJson(200, INFO_FIRST_RUN) });
    const { info } = await getInfo(server.baseUrl, TEST_API_KEY, { agents });
    expect(info.masterId).toBe('');
    expect(info.version).toBe('dev-local');
  });

  it('rejects a body that is not NodePass’s /info as invalid-response', async () => {
    const { server, agents } = await master({
      '/api/v1/info': respondJson(200, { ver: 7, uptime: 'long' }),
      '/api/v1/instances': respondText(200, 'text/html', '<html></html>'),
    });
    expect(await failureOf(getInfo(server.baseUrl, TEST_API_KEY, { agents }))).toMatchObject({
      kind: 'invalid-response',
      message: expect.stringContaining('/ver'),
    });
    expect(await failureOf(listInstances(server.baseUrl, TEST_API_KEY, { agents }))).toMatchObject({
      kind: 'invalid-response',
      message: expect.stringContaining('not JSON (text/html'),
    });
  });

  it('classifies a wrong key as auth with NodePass’s message', async () => {
    const { server, agents } = await master({ '/api/v1/info': respondJson(200, INFO_FIRST_RUN) });
    expect(await failureOf(getInfo(server.baseUrl, 'wrong', { agents }))).toEqual({
      kind: 'auth',
      status: 401,
      body: '{"error":"Unauthorized: Invalid API key"}',
    });
  });

  it('classifies a 500 as http with a bounded body', async () => {
    const { server, agents } = await master({ '/api/v1/info': respondText(500, 'text/plain', 'boom '.repeat(10_000)) });
    const failure = await failureOf(getInfo(server.baseUrl, TEST_API_KEY, { agents }));
    expect(failure).toMatchObject({ kind: 'http', status: 500 });
    expect(failure.kind === 'http' && failure.body.length).toBe(200);
  });

  it('times out a master that never answers, within the deadline', async () => {
    const { server, agents } = await master({ '/api/v1/info': neverRespond });
    const started = Date.now();
    expect(await failureOf(getInfo(server.baseUrl, TEST_API_KEY, { agents, timeoutMs: 200 }))).toMatchObject({ kind: 'timeout' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('times out a TCP peer that never writes', async () => {
    const silent = await startSilentTcpServer();
    cleanups.push(() => silent.close());
    const agents = new MasterAgentPool();
    cleanups.push(() => agents.destroy());
    expect(await failureOf(getInfo(silent.baseUrl, TEST_API_KEY, { agents, timeoutMs: 150 }))).toMatchObject({ kind: 'timeout' });
  });

  it('stops at once when its AbortSignal fires, and refuses to start with an aborted one', async () => {
    const { server, agents } = await master({ '/api/v1/info': neverRespond });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    expect(await failureOf(getInfo(server.baseUrl, TEST_API_KEY, { agents, signal: controller.signal }))).toEqual({ kind: 'aborted' });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(await failureOf(getInfo(server.baseUrl, TEST_API_KEY, { agents, signal: controller.signal }))).toEqual({ kind: 'aborted' });
  });

  it('reports a key that cannot be a header value as a MasterRequestError', async () => {
    const { server, agents } = await master({ '/api/v1/info': respondJson(200, INFO_FIRST_RUN) });
    expect(await failureOf(getInfo(server.baseUrl, 'bad\nkey', { agents }))).toMatchObject({ kind: 'network' });
  });

  it('classifies a refused port and an unresolvable host', async () => {
    const agents = new MasterAgentPool();
    cleanups.push(() => agents.destroy());
    const port = await refusedPort();
    expect(await failureOf(getInfo(`http://127.0.0.1:${port}/api/v1`, TEST_API_KEY, { agents }))).toMatchObject({ kind: 'refused' });
    expect(await failureOf(getInfo('http://nodepass.invalid/api/v1', TEST_API_KEY, { agents }))).toMatchObject({ kind: 'dns' });
  });

  it('reuses one keep-alive connection per endpoint across calls', async () => {
    const { server, agents } = await master({
      '/api/v1/info': respondJson(200, INFO_AFTER_RESTART),
      '/api/v1/instances': respondJson(200, INSTANCES),
    });
    await getInfo(server.baseUrl, TEST_API_KEY, { agents });
    await listInstances(server.baseUrl, TEST_API_KEY, { agents });
    await getInfo(server.baseUrl, TEST_API_KEY, { agents });
    expect(server.requests).toHaveLength(3);
    expect(server.connections()).toBe(1);

    agents.release(server.baseUrl);
    await getInfo(server.baseUrl, TEST_API_KEY, { agents });
    expect(server.connections()).toBe(2);
  });

  it('retries once on a fresh socket when a pooled one turns out dead, but not a fresh one', async () => {
    // The second request on any connection finds it dead (as after a NAT timeout or a master restart).
    const served = new WeakMap<object, number>();
    const staleAfterFirst: Responder = (req, res) => {
      const count = (served.get(req.socket) ?? 0) + 1;
      served.set(req.socket, count);
      if (count > 1) req.socket.destroy();
      else respondJson(200, INFO_AFTER_RESTART)(req, res);
    };
    const { server, agents } = await master({ '/api/v1/info': staleAfterFirst, '/api/v1/instances': (req) => req.socket.destroy() });
    await getInfo(server.baseUrl, TEST_API_KEY, { agents });
    const { info } = await getInfo(server.baseUrl, TEST_API_KEY, { agents });
    expect(info.version).toBe('dev-local');
    expect(server.requests).toHaveLength(3);
    expect(server.connections()).toBe(2);

    // On a connection of its own, a reset is the master's doing and is reported, not retried.
    agents.release(server.baseUrl);
    expect(await failureOf(listInstances(server.baseUrl, TEST_API_KEY, { agents }))).toMatchObject({ kind: 'reset' });
    expect(server.requests).toHaveLength(4);
  });

  it('verifies TLS unless insecureTls is set', async (context) => {
    const certificate = selfSignedCertificate();
    if ('unavailable' in certificate) return context.skip(certificate.unavailable);
    const { server, agents } = await master({ '/api/v1/info': respondJson(200, INFO_AFTER_RESTART) }, { tls: certificate });
    expect(await failureOf(getInfo(server.baseUrl, TEST_API_KEY, { agents }))).toMatchObject({ kind: 'tls' });
    const { info } = await getInfo(server.baseUrl, TEST_API_KEY, { agents, insecureTls: true });
    expect(info.masterId).toBe('1ab781946d30b9c8');
  });
});

describe('listInstances', () => {
  it('returns the validated instances, the master id from the API-key record, and never the key', async () => {
    expect(INSTANCES.find((i) => i.id === '********')?.url).toBe(S1_KEY); // the fixture holds the key…
    const { server, agents } = await master({ '/api/v1/instances': respondJson(200, INSTANCES) });
    const result = await listInstances(server.baseUrl, TEST_API_KEY, { agents });

    expect(result.masterId).toBe('1ab781946d30b9c8');
    expect(result.masterAlias).toBe('');
    expect(result.rejected).toEqual([]);
    expect(result.instances.map((i) => i.id).sort()).toEqual(
      INSTANCES.map((i) => i.id)
        .filter((id) => id !== '********')
        .sort(),
    );
    expect(result.instances.every((i) => i.url.includes('://'))).toBe(true);
    expect(JSON.stringify(result)).not.toContain(S1_KEY); // …the result does not
  });

  it('lists invalid entries as rejected with their ids, so reconciliation does not tombstone them', async () => {
    const good = INSTANCES.find((i) => i.id !== '********')!;
    const body = [...INSTANCES, { ...good, id: 'deadbeef', status: 'exploded' }, 42];
    const { server, agents } = await master({ '/api/v1/instances': respondJson(200, body) });
    const result = await listInstances(server.baseUrl, TEST_API_KEY, { agents });

    expect(result.instances).toHaveLength(INSTANCES.length - 1);
    expect(result.rejected).toEqual([
      { id: 'deadbeef', reason: expect.stringContaining('instance.status') },
      { id: null, reason: expect.any(String) },
    ]);
  });

  it('reports a master id of null when the API-key record is missing', async () => {
    const { server, agents } = await master({ '/api/v1/instances': respondJson(200, INSTANCES.filter((i) => i.id !== '********')) });
    expect((await listInstances(server.baseUrl, TEST_API_KEY, { agents })).masterId).toBeNull();
  });

  it('refuses a non-array and an over-large body as invalid-response', async () => {
    const { server, agents } = await master({ '/api/v1/instances': respondJson(200, { instances: [] }) });
    expect(await failureOf(listInstances(server.baseUrl, TEST_API_KEY, { agents }))).toMatchObject({ kind: 'invalid-response' });
    const big = await master({ '/api/v1/instances': respondJson(200, INSTANCES) });
    expect(await failureOf(listInstances(big.server.baseUrl, TEST_API_KEY, { agents: big.agents, maxResponseBytes: 100 }))).toMatchObject({
      kind: 'invalid-response',
      message: expect.stringContaining('exceeds 100 bytes'),
    });
  });
});
