/**
 * `openEventStream` against real loopback servers: real captures in random chunks, every way a connection
 * can fail or end, and the bounds (huge line, silent server).
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  countCaptureEvents,
  ipv6LoopbackAvailable,
  neverRespond,
  readCapture,
  refusedPort,
  requireKey,
  respondEmptySse,
  respondJson,
  respondText,
  routes,
  selfSignedCertificate,
  serveHugeLine,
  serveSse,
  startHttpServer,
  startSilentTcpServer,
  TEST_API_KEY,
  type Responder,
} from '../support/sse-server.js';
import { countAccepted, runStream } from './stream-harness.js';
import { IngestScheduler } from '../../src/runtime/ingest-scheduler.js';

const S1 = 'nodepass-s1-main-debug.sse';
const S1_MASTER_ID = '1ab781946d30b9c8';
const S1_CAPTURED_KEY = '1a040764b530633900dadf3b18cc8830';

const SHUTDOWN_EVENT =
  'event: instance\ndata: {"type":"shutdown","time":"2026-11-26T09:17:29.103582922Z","instance":null,"logs":""}\n\n';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function serve(responder: Responder, options?: Parameters<typeof startHttpServer>[1]) {
  const server = await startHttpServer(responder, options);
  cleanups.push(() => server.close());
  return server;
}

const eventsAt = (responder: Responder) => routes({ '/api/v1/events': requireKey(TEST_API_KEY, responder) });

describe('a real capture, served in random-size chunks', () => {
  it.each([
    { capture: S1, seed: 1, maxChunk: 4096 },
    { capture: S1, seed: 2, maxChunk: 7 },
    { capture: 'nodepass-s2-info-level.sse', seed: 3, maxChunk: 300 },
    { capture: 'nodepass-s1-after-key-rotation.sse', seed: 4, maxChunk: 64 },
    { capture: 'nodepass-s3-report-interval-1s.sse', seed: 5, maxChunk: 1 << 16 },
  ])('$capture (seed $seed, chunks ≤ $maxChunk B) arrives whole and ends as eof after shutdown', async ({ capture, seed, maxChunk }) => {
    const body = readCapture(capture);
    const expected = countCaptureEvents(body);
    const server = await serve(eventsAt(serveSse(body, { seed, maxChunk })));

    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });

    const got = countAccepted(run.events);
    expect(got.byType).toEqual(expected.byType);
    expect(got.masterRecords).toBe(expected.apiKeyRecords);
    expect(run.rejections).toEqual([]);
    expect(run.retries).toEqual([3000]);
    expect(run.close).toMatchObject({ kind: 'eof', afterShutdown: true });
    expect(run.close.stats).toMatchObject({
      bytes: Buffer.byteLength(body),
      events: expected.total,
      shutdownEvents: 1,
      rejected: 0,
    });
    expect(run.calls[0]).toBe('open');
    expect(run.calls.filter((call) => call === 'close')).toHaveLength(1);
    expect(run.calls.at(-1)).toBe('close');
  });

  it('s1 has the counts the protocol notes recorded', () => {
    // Guards the fixture itself: if the capture changed, the test above would still pass against it.
    const counts = countCaptureEvents(readCapture(S1));
    expect(counts.byType).toEqual({ log: 569, update: 54, create: 2, delete: 1, shutdown: 1 });
    expect(counts.apiKeyRecords).toBe(1);
  });

  it('delivers the API-key record as a master event with the master id and without the key', async () => {
    const server = await serve(eventsAt(serveSse(readCapture(S1))));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });

    const masters = run.events.filter(({ parsed }) => parsed.kind === 'master');
    expect(masters).toHaveLength(1);
    expect(masters[0]!.parsed).toMatchObject({ kind: 'master', type: 'initial', masterId: S1_MASTER_ID });
    expect(JSON.stringify(masters[0]!.parsed)).not.toContain(S1_CAPTURED_KEY);
  });

  it('sends the key only as X-API-Key, asks for SSE, and reports the open', async () => {
    const server = await serve(eventsAt(serveSse(readCapture('nodepass-s1-after-key-rotation.sse'))));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });

    expect(server.requests).toHaveLength(1);
    const [request] = server.requests;
    expect(request!.url).toBe('/api/v1/events');
    expect(request!.headers['x-api-key']).toBe(TEST_API_KEY);
    expect(request!.headers['accept']).toBe('text/event-stream');
    expect(run.opened).toEqual([
      expect.objectContaining({ status: 200, contentType: 'text/event-stream', remoteAddress: '127.0.0.1' }),
    ]);
    expect(run.close.stats.openedAt).toBeTypeOf('number');
  });

  it('reports a stream that ends without shutdown as eof with afterShutdown false', async () => {
    const server = await serve(eventsAt(serveSse(readCapture('nodepass-s1-second-subscriber.sse'))));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.close).toMatchObject({ kind: 'eof', afterShutdown: false });
    expect(run.events).toHaveLength(5);
  });
});

describe('how a connection fails or ends', () => {
  it('401 with NodePass’s JSON body is auth, with the body and without opening', async () => {
    const server = await serve(eventsAt(serveSse(readCapture(S1))));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: 'ffffffffffffffffffffffffffffffff' });
    expect(run.close).toMatchObject({ kind: 'auth', status: 401, body: '{"error":"Unauthorized: Invalid API key"}' });
    expect(run.opened).toEqual([]);
    expect(run.events).toEqual([]);
  });

  it('403 is auth as well', async () => {
    const server = await serve(routes({ '/api/v1/events': respondJson(403, { error: 'Forbidden' }) }));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.close).toMatchObject({ kind: 'auth', status: 403 });
  });

  it('500 is http with at most 200 bytes of body, and a reflected key is blanked', async () => {
    const reflectingProxy: Responder = (req, res) => {
      res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`upstream failed for X-API-Key: ${String(req.headers['x-api-key'])}\n${'x'.repeat(10_000)}`);
    };
    const server = await serve(routes({ '/api/v1/events': reflectingProxy }));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.close.kind).toBe('http');
    if (run.close.kind !== 'http') return;
    expect(run.close.status).toBe(500);
    expect(run.close.body).toContain('upstream failed for X-API-Key: [redacted]');
    expect(run.close.body).not.toContain(TEST_API_KEY);
    expect(Buffer.byteLength(run.close.body)).toBeLessThanOrEqual(200 + '[redacted]'.length);
  });

  it('an unknown path (Go’s plain 404) is http 404', async () => {
    const server = await serve(routes({}));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.close).toMatchObject({ kind: 'http', status: 404, body: '404 page not found\n' });
  });

  it('HTML with 200 is not-sse, with its content type', async () => {
    const server = await serve(routes({ '/api/v1/events': respondText(200, 'text/html; charset=utf-8', '<html>login</html>') }));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.close).toMatchObject({ kind: 'not-sse', contentType: 'text/html' });
    expect(run.opened).toEqual([]);
  });

  it('an empty 200 SSE body is eof with zero events', async () => {
    const server = await serve(eventsAt(respondEmptySse));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.close).toMatchObject({ kind: 'eof', afterShutdown: false, stats: { events: 0, bytes: 0 } });
    expect(run.opened).toHaveLength(1);
  });

  it('a connection cut mid-stream is reset, after delivering what had arrived', async () => {
    const body = readCapture(S1);
    const cut = body.slice(0, body.indexOf('"type":"delete"')); // everything up to the delete event, then cut
    const server = await serve(eventsAt(serveSse(cut, { ending: 'destroy' })));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.close.kind).toBe('reset');
    const expected = countCaptureEvents(cut.slice(0, cut.lastIndexOf('\n\n') + 2));
    expect(run.events).toHaveLength(expected.total);
  });

  it('a refused port is refused', async () => {
    const port = await refusedPort();
    const run = await runStream({ baseUrl: `http://127.0.0.1:${port}/api/v1`, apiKey: TEST_API_KEY });
    expect(run.close.kind).toBe('refused');
    expect(run.close.stats.openedAt).toBeNull();
  });

  it('a key that cannot be a header value is reported through onClose, not thrown', async () => {
    const server = await serve(eventsAt(respondEmptySse));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: 'bad\nkey' });
    expect(run.close.kind).toBe('network');
    expect(JSON.stringify(run.close)).not.toContain('bad\\nkey');
    expect(server.requests).toEqual([]);
  });

  it('an unresolvable host is dns', async () => {
    const run = await runStream({ baseUrl: 'http://nodepass.invalid:9090/api/v1', apiKey: TEST_API_KEY });
    expect(run.close.kind).toBe('dns');
  });

  it('a server that accepts and never writes is timeout after connectTimeoutMs', async () => {
    const silent = await startSilentTcpServer();
    cleanups.push(() => silent.close());
    const started = Date.now();
    const run = await runStream({ baseUrl: silent.baseUrl, apiKey: TEST_API_KEY, connectTimeoutMs: 300 });
    expect(run.close.kind).toBe('timeout');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('an HTTP server that reads the request and never answers is timeout too', async () => {
    const server = await serve(neverRespond);
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY, connectTimeoutMs: 200 });
    expect(run.close.kind).toBe('timeout');
  });

  it('an open stream that goes quiet is not timed out (NodePass has no heartbeat)', async () => {
    const firstEvents = readCapture('nodepass-s1-after-master-restart.sse').split('\n\n').slice(0, 3).join('\n\n') + '\n\n';
    const server = await serve(eventsAt(serveSse(firstEvents, { ending: 'hang' })));
    const run = await runStream(
      { baseUrl: server.baseUrl, apiKey: TEST_API_KEY, connectTimeoutMs: 100 },
      { onHandle: (handle) => setTimeout(() => handle.close(), 400) },
    );
    expect(run.close.kind).toBe('closed-by-us');
    expect(run.events.length).toBeGreaterThan(0);
  });

  it('close() ends the stream as closed-by-us, and nothing is delivered after it', async () => {
    const body = readCapture(S1);
    const server = await serve(eventsAt(serveSse(body, { maxChunk: 1 << 16 })));
    let closedAfter = -1;
    const run = await runStream(
      { baseUrl: server.baseUrl, apiKey: TEST_API_KEY },
      {
        onHandle: (handle, soFar) => {
          const closeOnFifth = setInterval(() => {
            if (soFar.events.length >= 5 && closedAfter < 0) {
              closedAfter = soFar.events.length;
              handle.close();
              handle.close(); // idempotent
              clearInterval(closeOnFifth);
            }
          }, 0);
        },
      },
    );
    expect(run.close.kind).toBe('closed-by-us');
    expect(run.events).toHaveLength(closedAfter);
    expect(run.calls.filter((call) => call === 'close')).toHaveLength(1);
  });

  it('a callback that throws ends the stream as handler-error instead of escaping', async () => {
    const server = await serve(eventsAt(serveSse(readCapture(S1))));
    let calls = 0;
    const run = await runStream({
      baseUrl: server.baseUrl,
      apiKey: TEST_API_KEY,
      onEvent: () => {
        calls += 1;
        if (calls === 3) throw new Error('actor exploded');
      },
    });
    expect(run.close).toMatchObject({ kind: 'handler-error', message: 'actor exploded' });
    expect(run.events).toHaveLength(3);
  });
});

describe('bad input inside a 200 stream', () => {
  it('rejects garbage payloads one by one, keeps their raw data, and keeps going', async () => {
    const valid = readCapture('nodepass-s1-after-key-rotation.sse');
    const garbage = [
      'retry: 3000\n\n',
      'event: instance\ndata: {not json\n\n',
      'event: instance\ndata: {"type":"explode","time":"2026-11-26T09:17:29Z","instance":null,"logs":""}\n\n',
      'event: surprise\ndata: {}\n\n',
      ': a comment from a proxy\n',
      'id: 7\nwhatever: field\n\n',
      'event: instance\ndata: {"type":"update","time":"2026-11-26T09:17:29Z","instance":{"id":"abcd1234","status":"weird"},"logs":""}\n\n',
      'event: instance\ndata: {"type":"update","time":"unterminated at EOF","instance":null}\n',
    ].join('');
    // The valid capture comes first, without its shutdown event, so that the garbage follows a live stream.
    const beforeShutdown = valid.slice(0, valid.lastIndexOf('event: instance'));
    const server = await serve(eventsAt(serveSse(beforeShutdown + garbage, { maxChunk: 13 })));
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });

    expect(run.events.map(({ parsed }) => parsed.kind).sort()).toEqual(['instance', 'master']);
    expect(run.rejections.map((r) => r.kind)).toEqual(['payload', 'payload', 'payload', 'payload']);
    expect(run.rejections[0]).toMatchObject({ eventName: 'instance', rawData: '{not json' });
    expect(run.rejections[2]).toMatchObject({ eventName: 'surprise' });
    expect(run.comments).toEqual(['a comment from a proxy']);
    expect(run.retries).toEqual([3000, 3000]);
    // The last event never got its blank line: not dispatched (SSE spec), and no shutdown was seen.
    expect(run.close).toMatchObject({ kind: 'eof', afterShutdown: false, stats: { rejected: 4, comments: 1 } });
  });

  it('a 50 MB line with no newline is discarded within the cap, reported once, and the stream recovers', async () => {
    const lineBytes = 50 * 1024 * 1024;
    const maxLineBytes = 64 * 1024;
    const server = await serve(eventsAt(serveHugeLine(lineBytes, SHUTDOWN_EVENT)));
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = heapBefore;
    const sampler = setInterval(() => (heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)), 5);

    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY, maxLineBytes }, { timeoutMs: 20_000 });
    clearInterval(sampler);

    expect(run.rejections).toHaveLength(1);
    const [overflow] = run.rejections;
    expect(overflow).toMatchObject({ kind: 'oversized-line' });
    if (overflow?.kind !== 'oversized-line') return;
    // The whole line went through the discard path: `data: ` plus 50 MB, none of it kept.
    expect(overflow.discardedBytes).toBe(lineBytes + 'data: '.length);
    expect(run.events.map(({ parsed }) => parsed.kind)).toEqual(['shutdown']);
    expect(run.close).toMatchObject({ kind: 'eof', afterShutdown: true });
    expect(run.close.stats.bytes).toBeGreaterThan(lineBytes);
    // Keeping the line would cost ≥ 50 MB of heap; generous slack for garbage not yet collected.
    expect(heapPeak - heapBefore).toBeLessThan(40 * 1024 * 1024);
  });
});

describe('TLS', () => {
  const certificate = selfSignedCertificate();
  const unavailable = 'unavailable' in certificate ? certificate.unavailable : undefined;

  it.skipIf(unavailable !== undefined)('a self-signed master is tls when verified, and streams with insecureTls', async () => {
    if (!('cert' in certificate)) return;
    const body = readCapture('nodepass-s1-after-key-rotation.sse');
    const server = await serve(eventsAt(serveSse(body)), { tls: certificate });
    expect(server.baseUrl.startsWith('https://')).toBe(true);

    const verified = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(verified.close.kind).toBe('tls');
    expect(verified.events).toEqual([]);

    const insecure = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY, insecureTls: true });
    expect(insecure.close).toMatchObject({ kind: 'eof', afterShutdown: true });
    expect(insecure.events).toHaveLength(countCaptureEvents(body).total);
  });

  if (unavailable) it.skip(`TLS tests skipped: ${unavailable}`, () => {});
});

describe('IPv6', async () => {
  const available = await ipv6LoopbackAvailable();

  it.skipIf(!available)('streams from a master on [::1]', async () => {
    const body = readCapture('nodepass-s1-after-key-rotation.sse');
    const server = await serve(eventsAt(serveSse(body)), { host: '::1' });
    expect(server.baseUrl).toMatch(/^http:\/\/\[::1\]:\d+\/api\/v1$/);
    const run = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY });
    expect(run.opened[0]?.remoteAddress).toBe('::1');
    expect(run.close).toMatchObject({ kind: 'eof', afterShutdown: true });
  });

  if (!available) it.skip('IPv6 skipped: cannot listen on ::1 here', () => {});
});

describe('with the ingest scheduler (parsing deferred to time-boxed slices)', () => {
  it('delivers the same events in the same order, and reports the end after the last of them', async () => {
    const body = readCapture(S1);
    const direct = await runStream({ baseUrl: (await serve(eventsAt(serveSse(body, { seed: 7, maxChunk: 4096 })))).baseUrl, apiKey: TEST_API_KEY });
    // One piece per slice and small pieces: the most interleaving with the socket's own callbacks.
    const scheduler = new IngestScheduler({ sliceBudgetMs: 0, pieceBytes: 256 });
    let processedCalls = 0;
    const server = await serve(eventsAt(serveSse(body, { seed: 7, maxChunk: 4096 })));
    const deferred = await runStream({ baseUrl: server.baseUrl, apiKey: TEST_API_KEY, scheduler, onInputProcessed: () => processedCalls++ });

    expect(deferred.close).toMatchObject({ kind: 'eof', afterShutdown: true });
    expect(deferred.events.map((e) => e.rawData)).toEqual(direct.events.map((e) => e.rawData));
    expect(deferred.calls.at(-1)).toBe('close');
    expect(deferred.calls.filter((c) => c === 'close')).toHaveLength(1);
    expect(processedCalls).toBeGreaterThan(body.length / 4096);
    expect(scheduler.stats()).toMatchObject({ backlogBytes: 0, inlineChunks: 0, discardedBytes: 0 });
    expect(scheduler.stats().slices).toBeGreaterThan(1);
  });
});
