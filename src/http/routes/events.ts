/**
 * `GET /api/events`: the live feed as Server-Sent Events, filtered by endpoint, tunnel and kind.
 *
 * Writes never wait: an event is written to the socket at once, and a client whose unsent bytes (Node's buffer and
 * the socket's) pass `maxBufferBytes` is cut off and counted (`liveFeed.slowClientsCut`, metric
 * `tunnelpulse_feed_slow_clients_cut`). Ingestion never waits for a reader. A comment line every `heartbeatMs`
 * keeps proxies from closing an idle stream.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { CHANGE_KINDS, type FeedFilter } from '../../runtime/change-feed.js';
import type { HttpDeps } from '../deps.js';
import { badRequest } from '../errors.js';
import { EventsQuery, errorResponses } from '../schemas.js';
import { listOf } from '../views.js';

export interface EventsOptions {
  /** Unsent bytes a client may have before it is cut off. Default 1 MiB. */
  maxBufferBytes?: number;
  /** Default 15 s. */
  heartbeatMs?: number;
}

const FAMILIES = new Set(CHANGE_KINDS.map((k) => k.slice(0, k.indexOf('.'))));

export function parseFilter(query: { endpoint?: string | undefined; tunnel?: string | undefined; kind?: string | undefined }): FeedFilter {
  const endpoints = listOf(query.endpoint).map((s) => {
    if (!/^\d+$/.test(s)) throw badRequest(`endpoint must be numeric ids, got ${JSON.stringify(s.slice(0, 40))}`);
    return Number(s);
  });
  const kinds = listOf(query.kind);
  for (const k of kinds) {
    if (!FAMILIES.has(k) && !(CHANGE_KINDS as readonly string[]).includes(k)) {
      throw badRequest(`unknown kind ${JSON.stringify(k.slice(0, 40))}; kinds: ${[...FAMILIES, ...CHANGE_KINDS].join(', ')}`);
    }
  }
  return { endpoints: new Set(endpoints), tunnels: new Set(listOf(query.tunnel)), kinds: new Set(kinds) };
}

export const eventRoutes: FastifyPluginAsyncTypebox<HttpDeps & { events?: EventsOptions }> = async (fastify, deps) => {
  const feed = deps.runtime.changes;
  const maxBufferBytes = deps.events?.maxBufferBytes ?? 1024 * 1024;
  const heartbeatMs = deps.events?.heartbeatMs ?? 15_000;

  // Open streams, ended when the server closes (a hijacked response would otherwise keep `close()` waiting).
  const open = new Set<() => void>();
  fastify.addHook('preClose', async () => {
    for (const end of [...open]) end();
  });

  fastify.get('/api/events', {
    schema: {
      tags: ['events'],
      summary: 'Live feed of state changes (text/event-stream); see docs/http-api.md for the event kinds',
      querystring: EventsQuery,
      produces: ['text/event-stream'],
      response: { ...errorResponses },
    },
  }, async (request, reply) => {
    const filter = parseFilter(request.query);
    const res = reply.raw;
    // Headers set by hooks (CORS) are on the reply; hijacking sends only what is written to the raw response.
    const headers: Record<string, string | number | string[]> = {};
    for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) headers[name] = value as string;
    reply.hijack();
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.socket?.setNoDelay(true);

    let closed = false;
    // Bytes accepted by write() and not yet handed to the kernel (the response writes straight to its socket).
    const unsent = () => Math.max(res.writableLength, res.socket?.writableLength ?? 0);
    const cleanup = () => {
      if (closed) return;
      closed = true;
      open.delete(end);
      unsubscribe();
      clearInterval(heartbeat);
    };
    const end = () => {
      cleanup();
      res.end();
    };
    open.add(end);
    const write = (text: string) => {
      if (closed) return;
      if (unsent() > maxBufferBytes) {
        feed.countSlowCut();
        request.log.warn({ reqId: request.id, unsentBytes: unsent() }, 'live feed client cut off: not reading fast enough');
        cleanup();
        res.destroy();
        return;
      }
      res.write(text);
    };

    const unsubscribe = feed.subscribe(filter, (event, json) => write(`id: ${event.seq}\nevent: ${event.kind}\ndata: ${json}\n\n`));
    const heartbeat = setInterval(() => write(': heartbeat\n\n'), heartbeatMs);
    heartbeat.unref();
    request.raw.on('close', cleanup);
    res.on('close', cleanup);

    const hello = {
      seq: feed.lastSeq,
      filter: { endpoint: [...filter.endpoints], tunnel: [...filter.tunnels], kind: [...filter.kinds] },
      kinds: CHANGE_KINDS,
    };
    write(`retry: 3000\nevent: ready\ndata: ${JSON.stringify(hello)}\n\n`);
  });
};
