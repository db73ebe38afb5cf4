/**
 * Test clients for the simulator, over real sockets: an SSE stream recorder that parses with our own
 * `SseParser` + `parseNodePassPayload` and keeps the raw bytes, and a one-shot REST request.
 */
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ClientRequest } from 'node:http';
import type { ParsedEvent } from '../../actors/model.js';
import { parseNodePassPayload } from '../../src/protocol/events.js';
import { SseParser } from '../../src/protocol/sse-parser.js';

export interface StreamRecorder {
  status: number;
  headers: IncomingHttpHeaders;
  /** Header lines as sent, `Name: value`, in order. */
  headerLines: string[];
  /** Everything received, as text. */
  body(): string;
  bytes(): number;
  events: ParsedEvent[];
  /** The JSON of every `data:` payload, in order. */
  payloads: string[];
  rejections: string[];
  overflows: number[];
  retry: number | undefined;
  /** How the stream ended: `eof` (clean end), `error` (reset), or undefined while open. */
  ended: 'eof' | 'error' | undefined;
  waitFor(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
  /** Stops reading from the socket (the kernel buffers fill up); `resume()` reads again. */
  pause(): void;
  resume(): void;
  close(): void;
}

function headerLinesOf(res: IncomingMessage): string[] {
  const lines: string[] = [];
  for (let i = 0; i < res.rawHeaders.length; i += 2) lines.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}`);
  return lines;
}

/** Opens `GET <apiBase>/events`; resolves once the response head has arrived (any status). */
export function openStream(apiBase: string, apiKey: string | undefined): Promise<StreamRecorder> {
  return new Promise((resolve, reject) => {
    const chunks: string[] = [];
    let byteCount = 0;
    const waiters = new Set<() => void>();
    const check = (): void => {
      for (const waiter of waiters) waiter();
    };
    let req: ClientRequest;
    const recorder: StreamRecorder = {
      status: 0,
      headers: {},
      headerLines: [],
      body: () => chunks.join(''),
      bytes: () => byteCount,
      events: [],
      payloads: [],
      rejections: [],
      overflows: [],
      retry: undefined,
      ended: undefined,
      waitFor(what, predicate, timeoutMs = 3000) {
        if (predicate()) return Promise.resolve();
        return new Promise<void>((ok, fail) => {
          const timer = setTimeout(() => {
            waiters.delete(waiter);
            fail(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
          }, timeoutMs);
          const waiter = (): void => {
            if (!predicate()) return;
            clearTimeout(timer);
            waiters.delete(waiter);
            ok();
          };
          waiters.add(waiter);
        });
      },
      pause: () => undefined,
      resume: () => undefined,
      close: () => req.destroy(),
    };
    const parser = new SseParser({
      onEvent(name, data) {
        recorder.payloads.push(data);
        const parsed = parseNodePassPayload(data, name);
        if (parsed.kind === 'rejected') recorder.rejections.push(parsed.reason);
        recorder.events.push(parsed);
      },
      onRetry(ms) {
        recorder.retry = ms;
      },
      onOverflow(bytes) {
        recorder.overflows.push(bytes);
      },
    });
    const url = new URL(`${apiBase}/events`);
    req = httpRequest(
      { hostname: url.hostname.replace(/^\[|\]$/g, ''), port: url.port, path: url.pathname, headers: apiKey === undefined ? {} : { 'X-API-Key': apiKey } },
      (res) => {
        recorder.status = res.statusCode ?? 0;
        recorder.headers = res.headers;
        recorder.headerLines = headerLinesOf(res);
        recorder.pause = () => res.pause();
        recorder.resume = () => res.resume();
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          chunks.push(chunk);
          byteCount += Buffer.byteLength(chunk);
          parser.feed(chunk);
          check();
        });
        res.on('end', () => {
          parser.end();
          recorder.ended ??= 'eof';
          check();
        });
        res.on('error', () => {
          recorder.ended ??= 'error';
          check();
        });
        res.on('close', () => {
          // `close` without `end`: the connection went away mid-stream.
          recorder.ended ??= res.complete ? 'eof' : 'error';
          check();
        });
        resolve(recorder);
      },
    );
    req.on('error', (error) => {
      if (recorder.status === 0) reject(error);
      recorder.ended ??= 'error';
      check();
    });
    req.end();
  });
}

export interface RestResponse {
  status: number;
  headers: IncomingHttpHeaders;
  headerLines: string[];
  text: string;
  json<T = unknown>(): T;
}

export function rest(
  method: string,
  url: string,
  options: { apiKey?: string; body?: unknown; timeoutMs?: number } = {},
): Promise<RestResponse> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const body = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    const headers: Record<string, string> = {};
    if (options.apiKey !== undefined) headers['X-API-Key'] = options.apiKey;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const req = httpRequest(
      { method, hostname: target.hostname.replace(/^\[|\]$/g, ''), port: target.port, path: target.pathname + target.search, headers },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            headerLines: headerLinesOf(res),
            text,
            json: <T>() => JSON.parse(text) as T,
          });
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(options.timeoutMs ?? 3000, () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Instance events of one type (and optionally one instance), in arrival order. */
export function instanceEvents(recorder: StreamRecorder, type?: string, instanceId?: string) {
  return recorder.events.flatMap((e) =>
    e.kind === 'instance' && (type === undefined || e.event.type === type) && (instanceId === undefined || e.event.instance.id === instanceId)
      ? [e.event]
      : [],
  );
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
