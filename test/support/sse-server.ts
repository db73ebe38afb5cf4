/**
 * Small local servers that behave like a NodePass master (and like the ways a master, a proxy or a network
 * misbehaves), over real loopback sockets. Each test starts what it needs and closes it in `afterEach`.
 *
 * Responders are plain `(req, res) => void` functions, so a test can route paths to them:
 *   const server = await startHttpServer(routes({ '/api/v1/events': serveSse(body) }));
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export type Responder = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface TestServer {
  /** The NodePass-style API base, e.g. `http://127.0.0.1:41234/api/v1` or `http://[::1]:41234/api/v1`. */
  baseUrl: string;
  port: number;
  requests: RecordedRequest[];
  /** TCP connections accepted so far (to see keep-alive reuse). */
  connections: () => number;
  close(): Promise<void>;
}

export interface ServerOptions {
  host?: string;
  tls?: { key: string; cert: string };
}

export const TEST_API_KEY = '0123456789abcdef0123456789abcdef';

export const CAPTURES_DIR = new URL('../../fixtures/captures/', import.meta.url);

export function readCapture(name: string): string {
  return readFileSync(new URL(name, CAPTURES_DIR), 'utf8');
}

export async function startHttpServer(responder: Responder, options: ServerOptions = {}): Promise<TestServer> {
  const host = options.host ?? '127.0.0.1';
  const requests: RecordedRequest[] = [];
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    responder(req, res);
  };
  const server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler) : http.createServer(handler);
  let connections = 0;
  server.on('connection', () => (connections += 1));
  // Node would otherwise close idle keep-alive sockets after 5 s; NodePass (Go, no timeouts) never does.
  server.keepAliveTimeout = 60_000;
  const port = await listen(server, host);
  const scheme = options.tls ? 'https' : 'http';
  const hostPart = host.includes(':') ? `[${host}]` : host;
  return {
    baseUrl: `${scheme}://${hostPart}:${port}/api/v1`,
    port,
    requests,
    connections: () => connections,
    close: () => closeServer(server),
  };
}

/** Routes by path (query ignored); anything else gets Go's plain-text 404. */
export function routes(table: Record<string, Responder>): Responder {
  return (req, res) => {
    const pathname = (req.url ?? '').split('?', 1)[0]!;
    const responder = table[pathname];
    if (responder) responder(req, res);
    else res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
  };
}

/** NodePass's auth check (PROTOCOL §2) in front of a responder: 401 JSON for a missing or wrong key. */
export function requireKey(key: string, responder: Responder): Responder {
  return (req, res) => {
    const given = req.headers['x-api-key'];
    if (!given) return respondJson(401, { error: 'Unauthorized: API key required' })(req, res);
    if (given !== key) return respondJson(401, { error: 'Unauthorized: Invalid API key' })(req, res);
    responder(req, res);
  };
}

/** The response headers a NodePass master sends on `/events` (PROTOCOL §5.1). */
export function writeSseHead(res: http.ServerResponse): void {
  res.writeHead(200, {
    'Access-Control-Allow-Origin': '*',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
    'Content-Type': 'text/event-stream',
  });
}

export interface SseBodyOptions {
  /** Seed of the chunk-size generator, so a failure reproduces. */
  seed?: number;
  /** Chunk sizes are uniform in [1, maxChunk]. */
  maxChunk?: number;
  /** How the response ends after the body: cleanly, by cutting the connection, or never. */
  ending?: 'end' | 'destroy' | 'hang';
}

/** Serves `body` as an SSE stream in random-size chunks (splitting lines, events and UTF-8 sequences). */
export function serveSse(body: string | Buffer, options: SseBodyOptions = {}): Responder {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  return (_req, res) => {
    writeSseHead(res);
    const random = mulberry32(options.seed ?? 1);
    const maxChunk = options.maxChunk ?? 4096;
    void (async () => {
      for (let offset = 0; offset < bytes.length; ) {
        const size = 1 + Math.floor(random() * maxChunk);
        const ok = res.write(bytes.subarray(offset, offset + size));
        offset += size;
        if (!ok) await onceDrained(res);
        // Yield now and then so chunks leave as separate writes rather than one coalesced buffer.
        if (random() < 0.1) await new Promise((resolve) => setImmediate(resolve));
        if (res.destroyed) return;
      }
      await finishResponse(res, options.ending ?? 'end');
    })();
  };
}

/** `retry:` then one line of `lineBytes` bytes with no newline for a long time, then a valid event. */
export function serveHugeLine(lineBytes: number, after: string): Responder {
  return (_req, res) => {
    writeSseHead(res);
    void (async () => {
      res.write('retry: 3000\n\ndata: ');
      const block = Buffer.alloc(64 * 1024, 'x');
      for (let sent = 0; sent < lineBytes; sent += block.length) {
        if (res.destroyed) return;
        if (!res.write(block.subarray(0, Math.min(block.length, lineBytes - sent)))) await onceDrained(res);
      }
      res.end(`\n\n${after}`);
    })();
  };
}

export function respondJson(status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): Responder {
  return (_req, res) => {
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers }).end(JSON.stringify(body));
  };
}

export function respondText(status: number, contentType: string, body: string): Responder {
  return (_req, res) => {
    res.writeHead(status, { 'Content-Type': contentType }).end(body);
  };
}

/** Headers of an SSE stream and then a clean end with no body at all. */
export const respondEmptySse: Responder = (_req, res) => {
  writeSseHead(res);
  res.end();
};

/** Reads the request and never answers (a hung master or a black-holing proxy). */
export const neverRespond: Responder = () => {};

/** A TCP server that accepts connections and never writes a byte. */
export async function startSilentTcpServer(host = '127.0.0.1'): Promise<{ baseUrl: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  const port = await listen(server, host);
  return {
    baseUrl: `http://${host}:${port}/api/v1`,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback port with nothing listening (bound once, then released). */
export async function refusedPort(host = '127.0.0.1'): Promise<number> {
  const server = net.createServer();
  const port = await listen(server, host);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function ipv6LoopbackAvailable(): Promise<boolean> {
  const server = net.createServer();
  try {
    await listen(server, '::1');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return true;
  } catch {
    return false;
  }
}

/**
 * A self-signed certificate for 127.0.0.1 made with the `openssl` CLI (Node has no certificate builder),
 * or `{ unavailable }` with the reason when openssl is not available.
 */
export function selfSignedCertificate(): { key: string; cert: string } | { unavailable: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tp-cert-'));
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'),
        '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore', timeout: 10_000 },
    );
    return { key: readFileSync(path.join(dir, 'key.pem'), 'utf8'), cert: readFileSync(path.join(dir, 'cert.pem'), 'utf8') };
  } catch (error) {
    return { unavailable: `openssl could not make a certificate: ${(error as Error).message}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Counts the events of a raw capture independently of the code under test: one `data:` line per event. */
export function countCaptureEvents(body: string): { byType: Record<string, number>; apiKeyRecords: number; total: number } {
  const byType: Record<string, number> = {};
  let apiKeyRecords = 0;
  let total = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    const payload = JSON.parse(line.slice('data: '.length)) as { type: string; instance: { id: string } | null };
    total += 1;
    if (payload.instance?.id === '********') {
      apiKeyRecords += 1;
      continue;
    }
    byType[payload.type] = (byType[payload.type] ?? 0) + 1;
  }
  return { byType, apiKeyRecords, total };
}

async function finishResponse(res: http.ServerResponse, ending: 'end' | 'destroy' | 'hang'): Promise<void> {
  if (ending === 'end') res.end();
  if (ending !== 'destroy') return;
  // Let what was written reach the peer first, then cut with a TCP RST, as a crashed master would.
  const socket = res.socket;
  if (!socket) return;
  while (!socket.destroyed && (res.writableLength > 0 || socket.writableLength > 0)) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  socket.resetAndDestroy();
}

function onceDrained(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function listen(server: net.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

async function closeServer(server: http.Server | https.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A tiny seeded PRNG (deterministic chunking). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
