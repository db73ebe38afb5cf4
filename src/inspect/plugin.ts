/**
 * `/inspect`: the machine inspection page, as a Fastify plugin the HTTP app registers (`{ runtime }`).
 *
 *   GET /inspect                        the page (static HTML; no data in it)
 *   GET /inspect/assets/<file>          its script and style, served from this package (works offline)
 *   GET /inspect/api/machines           the machines: name, XState id
 *   GET /inspect/api/machines/<name>.svg  a machine's diagram, Graphviz SVG generated from its definition
 *   GET /inspect/api/actors             the actor tree now
 *   GET /inspect/api/actors/<id>        one actor: state, context (bounded JSON), recent events if watched
 *   GET /inspect/api/stream?watch=<id>  SSE: `tree` (all, then changes) and `actor` (the watched one)
 *   GET /inspect/api/status             streams open, watched actors, whether inspection is attached
 *
 * Access: the page and its assets are static and public (they hold no data; `isPublicInspectPath`, used by the
 * app's bearer-token hook); every `/inspect/api/*` route needs the token. EventSource cannot send headers, so the
 * app's hook also accepts `?token=` on the stream route (compared in constant time; never echoed).
 */
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import type { Runtime } from '../runtime/runtime.js';
import { renderMachineSvg } from './dot.js';
import { InspectHub, type InspectHubOptions } from './inspect-hub.js';
import { MACHINES, isMachineName, type MachineName } from './machines.js';

export interface InspectPluginOptions {
  runtime: Runtime;
  hub?: InspectHubOptions;
}

const ASSETS: Record<string, string> = {
  'inspect.js': 'text/javascript; charset=utf-8',
  'inspect.css': 'text/css; charset=utf-8',
};

const PAGE_PATH = '/inspect';
const ASSET_PREFIX = '/inspect/assets/';
const STREAM_PATH = '/inspect/api/stream';

/** True for the page and its static assets, which carry no data and load before the page has its token. */
export function isPublicInspectPath(url: string): boolean {
  const path = url.split('?', 1)[0]!;
  return path === PAGE_PATH || path === `${PAGE_PATH}/` || (path.startsWith(ASSET_PREFIX) && Object.hasOwn(ASSETS, path.slice(ASSET_PREFIX.length)));
}

const notFound = (what: string) => ({ error: { code: 'NOT_FOUND', message: `${what} not found` } });

export async function inspectPlugin(fastify: FastifyInstance, options: InspectPluginOptions): Promise<void> {
  const pageDir = new URL('./page/', import.meta.url);
  const page = readFileSync(new URL('index.html', pageDir));
  const assets = new Map(Object.entries(ASSETS).map(([name, type]) => [name, { type, body: readFileSync(new URL(name, pageDir)) }]));
  const hub = new InspectHub(options.runtime, options.hub);
  const svgs = new Map<MachineName, Promise<string>>();
  const svgOf = (name: MachineName): Promise<string> => {
    let svg = svgs.get(name);
    if (!svg) {
      svg = renderMachineSvg(MACHINES[name]);
      // A failed render is not cached: the next request tries again.
      svg.catch(() => svgs.delete(name));
      svgs.set(name, svg);
    }
    return svg;
  };

  // Before the server closes: an open SSE response would otherwise keep `close()` waiting for ever.
  fastify.addHook('preClose', async () => hub.close());

  const sendPage = async (_req: unknown, reply: import('fastify').FastifyReply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      // The page loads nothing from anywhere else: the policy makes that a rule, and blocks injected script.
      .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .send(page);
  fastify.get(PAGE_PATH, sendPage);
  fastify.get(`${PAGE_PATH}/`, sendPage);

  fastify.get<{ Params: { file: string } }>(`${ASSET_PREFIX}:file`, async (req, reply) => {
    const asset = Object.hasOwn(ASSETS, req.params.file) ? assets.get(req.params.file) : undefined;
    if (!asset) return reply.code(404).send(notFound('asset'));
    return reply.type(asset.type).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').send(asset.body);
  });

  fastify.get('/inspect/api/machines', async () => ({
    machines: (Object.keys(MACHINES) as MachineName[]).map((name) => ({ name, id: MACHINES[name].id, svg: `/inspect/api/machines/${name}.svg` })),
  }));

  fastify.get<{ Params: { file: string } }>('/inspect/api/machines/:file', async (req, reply) => {
    const name = req.params.file.replace(/\.svg$/, '');
    if (!req.params.file.endsWith('.svg') || !isMachineName(name)) return reply.code(404).send(notFound('machine'));
    return reply.type('image/svg+xml; charset=utf-8').header('cache-control', 'no-cache').send(await svgOf(name));
  });

  fastify.get('/inspect/api/actors', async () => ({ actors: hub.actors() }));

  fastify.get<{ Params: { id: string } }>('/inspect/api/actors/:id', async (req, reply) => {
    const actor = hub.actor(req.params.id);
    return actor ?? reply.code(404).send(notFound('actor'));
  });

  fastify.get('/inspect/api/status', async () => hub.status());

  fastify.get<{ Querystring: { watch?: string } }>(STREAM_PATH, async (req, reply) => {
    const watch = typeof req.query.watch === 'string' && req.query.watch !== '' ? req.query.watch : null;
    if (watch !== null && watch.length > 300) {
      return reply.code(400).send({ error: { code: 'BAD_REQUEST', message: 'watch: an actor id is at most 300 characters' } });
    }
    if (!hub.admits()) {
      return reply.code(429).send({ error: { code: 'RATE_LIMITED', message: 'too many inspect streams are open; try again later' } });
    }
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 2000\n\n');
    const close = hub.connect({ write: (chunk) => void res.write(chunk), buffered: () => res.writableLength, destroy: () => res.destroy() }, watch);
    if (!close) {
      res.end();
      return reply;
    }
    res.on('close', close);
    res.on('error', close);
    req.raw.on('close', close);
    return reply;
  });
}
