/** A test client for `GET /api/events` over a real socket, parsing with our own SSE parser. */
import { request } from 'node:http';
import { SseParser } from '../../src/protocol/sse-parser.js';

export interface FeedEvent {
  name: string;
  data: any;
}

export interface FeedClient {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  events: FeedEvent[];
  comments: string[];
  ended: boolean;
  waitFor(what: string, predicate: (events: FeedEvent[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): void;
}

export function openFeed(origin: string, path: string, headers: Record<string, string> = {}): Promise<FeedClient> {
  return new Promise((resolve, reject) => {
    const url = new URL(path, origin);
    const req = request({ hostname: url.hostname, port: url.port, path: `${url.pathname}${url.search}`, headers }, (res) => {
      const client: FeedClient = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: [],
        comments: [],
        ended: false,
        async waitFor(what, predicate, timeoutMs = 10_000) {
          const deadline = Date.now() + timeoutMs;
          while (!predicate(client.events)) {
            if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${client.events.map((e) => e.name).join(', ')}`);
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        close: () => req.destroy(),
      };
      const parser = new SseParser({
        onEvent: (name, data) => client.events.push({ name, data: JSON.parse(data) }),
        onComment: (text) => client.comments.push(text),
      });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => parser.feed(chunk));
      res.on('end', () => (client.ended = true));
      res.on('error', () => (client.ended = true));
      resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}
