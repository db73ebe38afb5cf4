/**
 * HTTP responses shaped like the master's Go handlers (PROTOCOL §2, §3): CORS on every response, bare JSON
 * bodies from `json.NewEncoder(w).Encode` (so a trailing newline), Go's `http.NotFound` text for unknown paths.
 * Headers are set in Go's sorted order; Node then appends `Date` and `Transfer-Encoding`, which is where Go
 * puts them too.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { goJsonString } from './go-wire.js';

export const CORS_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'Access-Control-Allow-Headers': 'Content-Type, Authorization, X-API-Key, Cache-Control',
  'Access-Control-Allow-Methods': 'GET, PATCH, POST, PUT, DELETE, OPTIONS',
  'Access-Control-Allow-Origin': '*',
});

/** §5.1, in the order the real master sends them. */
export const SSE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  ...CORS_HEADERS,
  'Cache-Control': 'no-cache',
  // Set explicitly so that Node does not add its own `Keep-Alive: timeout=…` header, which Go never sends.
  Connection: 'keep-alive',
  'Content-Type': 'text/event-stream',
});

function setHeaders(res: ServerResponse, headers: Readonly<Record<string, string>>): void {
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
}

/** A JSON body already encoded Go-style (see go-wire.ts). */
export function replyJson(res: ServerResponse, status: number, json: string): void {
  res.statusCode = status;
  setHeaders(res, { ...CORS_HEADERS, 'Content-Type': 'application/json' });
  res.end(`${json}\n`);
}

export function replyError(res: ServerResponse, status: number, message: string): void {
  replyJson(res, status, `{"error":${goJsonString(message)}}`);
}

export function replyNoContent(res: ServerResponse, status = 204): void {
  res.statusCode = status;
  setHeaders(res, CORS_HEADERS);
  res.end();
}

/** Go's `http.NotFound`. */
export function replyGoNotFound(res: ServerResponse): void {
  res.statusCode = 404;
  setHeaders(res, {
    ...CORS_HEADERS,
    'Content-Type': 'text/plain; charset=utf-8',
    'X-Content-Type-Options': 'nosniff',
  });
  res.end('404 page not found\n');
}

export function replyRaw(res: ServerResponse, status: number, contentType: string | null, body: string): void {
  res.statusCode = status;
  setHeaders(res, CORS_HEADERS);
  if (contentType !== null) res.setHeader('Content-Type', contentType);
  res.end(body);
}

const MAX_BODY_BYTES = 1 << 20;

/** The request body as text, or null when it is larger than any NodePass request could be. */
export function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(tooLarge ? null : Buffer.concat(chunks).toString('utf8')));
    req.on('error', () => resolve(null));
  });
}

/** `JSON.parse` that answers `undefined` instead of throwing (Go's decoder error path). */
export function parseJsonObject(text: string | null): Record<string, unknown> | undefined {
  if (text === null) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
